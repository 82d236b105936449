defmodule ClusterScope.Metrics.HistogramTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Metrics.Histogram

  import Bitwise, only: [<<<: 2]

  @max_u64 (1 <<< 64) - 1

  defp new!(opts \\ []) do
    {:ok, h} = Histogram.new(opts)
    h
  end

  test "records values and answers quantiles in the order asked" do
    h = new!()
    for v <- 1..1000, do: assert(:ok = Histogram.record(h, v))
    assert {:ok, [500, 1, 1000, 990]} = Histogram.quantiles(h, [0.5, 0, 1, 0.99])

    stats = Histogram.stats(h)
    assert %{count: 1000, min: 1, max: 1000, saturated: 0} = stats
    assert_in_delta stats.mean, 500.5, 0.5
    assert_in_delta stats.stdev, 288.7, 1.0
    assert %{lowest: 1, highest: 3_600_000_000, significant_figures: 3} = stats
  end

  test "an empty histogram gives zeros" do
    h = new!()
    assert {:ok, [0, 0]} = Histogram.quantiles(h, [0.5, 1.0])
    assert %{count: 0, min: 0, max: 0, mean: +0.0} = Histogram.stats(h)
    assert {:ok, []} = Histogram.quantiles(h, [])
  end

  test "values above the range are clamped and counted as saturated" do
    h = new!(highest: 1000, significant_figures: 2)
    :ok = Histogram.record(h, 5)
    :ok = Histogram.record(h, 5_000)
    :ok = Histogram.record(h, @max_u64 + 10)
    :ok = Histogram.record_n(h, 2_000, 3)
    assert %{count: 6, saturated: 5, max: max} = Histogram.stats(h)
    assert max in 1000..1010
  end

  test "record_n and batches (list and binary, normal and dirty)" do
    h = new!()
    assert :ok = Histogram.record_n(h, 42, 10)
    assert :ok = Histogram.record_n(h, 42, 0)
    assert {:ok, 3} = Histogram.record_batch(h, [1, 2, 3])
    assert {:ok, 2} = Histogram.record_batch(h, <<7::little-64, 8::little-64>>)
    big = for v <- 1..20_000, into: <<>>, do: <<v::little-unsigned-64>>
    assert byte_size(big) > 65_536
    assert {:ok, 20_000} = Histogram.record_batch(h, big)
    assert %{count: 20_015} = Histogram.stats(h)
    assert {:ok, 0} = Histogram.record_batch(h, [])
  end

  test "reset empties, merge adds (itself included)" do
    a = new!()
    b = new!()
    {:ok, _} = Histogram.record_batch(a, [10, 20, 30])
    {:ok, _} = Histogram.record_batch(b, [40])
    assert :ok = Histogram.merge(a, b)
    assert %{count: 4, max: 40} = Histogram.stats(a)
    assert %{count: 1} = Histogram.stats(b)
    assert :ok = Histogram.merge(a, a)
    assert %{count: 8} = Histogram.stats(a)
    assert :ok = Histogram.reset(a)
    assert %{count: 0} = Histogram.stats(a)
  end

  test "a large histogram (5 figures, 16 MiB of counts) works through the dirty variants" do
    assert ClusterScope.Native.hist_new(1, 3_600_000_000, 5) == :use_dirty
    big = new!(significant_figures: 5)
    small = new!()
    assert ClusterScope.Native.hist_stats(big) == :use_dirty
    assert ClusterScope.Native.hist_merge(small, big) == :use_dirty

    {:ok, 3} = Histogram.record_batch(big, [12_345, 123_456, 1_234_567])
    :ok = Histogram.record(big, 7)
    # Exact to 5 figures: the median is the second of four values.
    assert {:ok, [7, 12_345, max]} = Histogram.quantiles(big, [0.0, 0.5, 1.0])
    assert max in 1_234_567..1_234_580
    assert %{count: 4, significant_figures: 5} = Histogram.stats(big)
    assert :ok = Histogram.merge(small, big)
    assert :ok = Histogram.merge(big, small)
    assert %{count: 8} = Histogram.stats(big)
    {:ok, bin} = Histogram.serialize(big)
    {:ok, back} = Histogram.deserialize(bin)
    assert %{count: 8, significant_figures: 5} = Histogram.stats(back)
    assert :ok = Histogram.reset(big)
    assert %{count: 0} = Histogram.stats(big)
  end

  test "many processes record into one histogram at once" do
    h = new!()

    1..8
    |> Enum.map(fn i ->
      Task.async(fn -> for v <- 1..10_000, do: :ok = Histogram.record(h, v * i) end)
    end)
    |> Enum.each(&Task.await/1)

    assert %{count: 80_000} = Histogram.stats(h)
  end

  test "a serialized histogram round-trips and merges with others" do
    a = new!()
    b = new!()
    {:ok, _} = Histogram.record_batch(a, Enum.to_list(1..1000))
    {:ok, _} = Histogram.record_batch(b, Enum.to_list(1001..2000))

    {:ok, bin_a} = Histogram.serialize(a)
    {:ok, bin_b} = Histogram.serialize(b, compressed: false)
    # V2 compressed and V2 uncompressed cookies.
    assert <<0x1C849314::32, _::binary>> = bin_a
    assert <<0x1C849313::32, _::binary>> = bin_b

    {:ok, back} = Histogram.deserialize(bin_a)

    assert Map.take(Histogram.stats(back), [:count, :min, :max]) ==
             Map.take(Histogram.stats(a), [:count, :min, :max])

    qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]
    assert Histogram.quantiles(back, qs) == Histogram.quantiles(a, qs)

    {:ok, merged} = Histogram.merge_serialized([bin_a, bin_b])
    assert %{count: 2000, min: 1, max: 2000} = Histogram.stats(merged)
    assert {:ok, [1000]} = Histogram.quantiles(merged, [0.5])
  end

  test "a histogram serialized on another process travels as a plain binary" do
    parent = self()

    spawn(fn ->
      {:ok, h} = Histogram.new()
      {:ok, _} = Histogram.record_batch(h, [100, 200, 300])
      {:ok, bin} = Histogram.serialize(h)
      send(parent, {:hist, :erlang.term_to_binary(bin)})
    end)

    assert_receive {:hist, external}, 5_000
    {:ok, h} = Histogram.deserialize(:erlang.binary_to_term(external))
    assert %{count: 3, max: 300} = Histogram.stats(h)
  end

  test "bad configurations name the field" do
    assert {:error, {:invalid_config, m}} = Histogram.new(lowest: 0)
    assert m =~ "lowest"
    assert {:error, {:invalid_config, m}} = Histogram.new(lowest: 100, highest: 150)
    assert m =~ "highest"
    assert {:error, {:invalid_config, m}} = Histogram.new(significant_figures: 6)
    assert m =~ "significant_figures"
    assert {:error, {:invalid_config, m}} = Histogram.new(significant_figures: 0)
    assert m =~ "significant_figures"
    assert {:error, {:invalid_config, m}} = Histogram.new(highest: "big")
    assert m =~ "highest"
    assert {:error, {:invalid_config, _}} = Histogram.new(%{lowest: 1})
    assert {:error, {:invalid_config, m}} = Histogram.new(lowest: -1)
    assert m =~ "lowest"
    # Too much memory: refused.
    assert {:error, {:invalid_config, m}} =
             Histogram.new(highest: @max_u64, significant_figures: 5)

    assert m =~ "bytes of counts"
  end

  @tag :cluster
  test "without the native core: {:error, :native_unavailable}, and runs still work" do
    {:ok, peer} =
      ClusterScope.LocalCluster.start_peer(
        connection: :standard_io,
        link: false,
        app_env: [{:cluster_scope, :native_path, "/nonexistent/libcluster_scope_nif"}]
      )

    on_exit(fn -> System.cmd("kill", ["-KILL", "#{peer.os_pid}"]) end)
    call = fn m, f, a -> ClusterScope.LocalCluster.call(peer, m, f, a) end

    assert call.(Histogram, :new, [[]]) == {:error, :native_unavailable}
    assert call.(Histogram, :deserialize, [<<1, 2, 3>>]) == {:error, :native_unavailable}
    assert call.(Histogram, :merge_serialized, [[<<1>>]]) == {:error, :native_unavailable}
    # Operations still run (and record nothing); the metrics operation needs
    # the core.
    assert {:ok, _} = call.(ClusterScope, :run, ["list_operations", %{}])
    assert call.(ClusterScope.Metrics.OperationLatency, :local_summary, []) == []

    assert {:error, %ClusterScope.Error{code: :native_unavailable}} =
             call.(ClusterScope, :run, ["operation_metrics", %{}])
  end

  test "bad arguments are errors, not exceptions" do
    h = new!()
    assert {:error, {:invalid_value, _}} = Histogram.record(h, -1)
    assert {:error, {:invalid_value, _}} = Histogram.record(h, 1.5)
    assert {:error, {:invalid_value, _}} = Histogram.record(:not_a_histogram, 1)
    assert {:error, {:invalid_value, _}} = Histogram.record_n(h, 1, -1)
    assert {:error, {:invalid_value, _}} = Histogram.record_batch(h, [1, -2, 3])
    assert {:error, {:invalid_value, _}} = Histogram.record_batch(h, [1 | 2])
    assert {:error, {:invalid_batch, m}} = Histogram.record_batch(h, <<1, 2, 3>>)
    assert m =~ "multiple of 8"
    assert %{count: 0} = Histogram.stats(h)

    assert {:error, {:invalid_quantile, m}} = Histogram.quantiles(h, [0.5, 1.5])
    assert m =~ "position 1"
    assert {:error, {:invalid_quantile, _}} = Histogram.quantiles(h, [:p99])
    assert {:error, {:invalid_value, _}} = Histogram.quantiles(h, 0.5)

    assert {:error, {:invalid_serialized, _}} = Histogram.deserialize("not a histogram")
    assert {:error, {:invalid_serialized, _}} = Histogram.deserialize(42)
    assert {:error, {:too_large, _}} = Histogram.deserialize(:binary.copy(<<0>>, 1_048_577))
    assert {:error, {:empty, _}} = Histogram.merge_serialized([])
    {:ok, good} = Histogram.serialize(h)

    assert {:error, {:invalid_serialized, m}} = Histogram.merge_serialized([good, "junk"])
    assert m =~ "histogram 1"
    assert {:error, {:invalid_serialized, _}} = Histogram.merge_serialized([good, 1])
    assert {:error, {:invalid_value, _}} = Histogram.merge(h, :nope)

    # A reference that is not a histogram.
    other = make_ref()

    for result <- [
          Histogram.record(other, 1),
          Histogram.record_n(other, 1, 2),
          Histogram.record_batch(other, [1]),
          Histogram.quantiles(other, [0.5]),
          Histogram.stats(other),
          Histogram.reset(other),
          Histogram.merge(h, other),
          Histogram.merge(other, h),
          Histogram.serialize(other)
        ] do
      assert {:error, {:invalid_value, "not a histogram reference"}} = result
    end
  end
end
