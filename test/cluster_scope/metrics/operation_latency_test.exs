defmodule ClusterScope.Metrics.OperationLatencyTest do
  # Records into the node-wide latency table: not async.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Metrics.{Histogram, OperationLatency}
  alias ClusterScope.Operation.Runner
  alias ClusterScope.Test.HTTP
  alias ClusterScope.TestOps
  alias ClusterScope.Web.Endpoint

  setup_all do
    {:ok, endpoint} = Endpoint.start(port: 0)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{url: endpoint.url}
  end

  setup do
    TestOps.register()
  end

  defp count(name) do
    case OperationLatency.histogram(name) do
      {:ok, hist} -> Histogram.stats(hist).count
      :error -> 0
    end
  end

  test "every run through ClusterScope.run is recorded, successes and errors" do
    before_ok = count("test_echo")
    before_err = count("test_fail")

    for i <- 1..25, do: {:ok, _} = ClusterScope.run("test_echo", %{text: "hi #{i}"})
    for _ <- 1..5, do: {:error, _} = ClusterScope.run("test_fail", %{how: "not_found"})
    # Invalid parameters: the operation is known, so the run counts too.
    {:error, _} = ClusterScope.run("test_echo", %{})

    assert count("test_echo") - before_ok == 26
    assert count("test_fail") - before_err == 5

    summary = Enum.find(OperationLatency.local_summary(), &(&1.name == "test_echo"))
    assert summary.count >= 26
    assert summary.p50_us <= summary.p90_us and summary.p90_us <= summary.p99_us
    assert summary.p99_us <= summary.p999_us and summary.p999_us <= summary.max_us
    assert summary.max_us > 0
  end

  test "an unknown operation records nothing and never raises" do
    size = :ets.info(OperationLatency, :size)
    {:error, _} = ClusterScope.run("no_such_operation_#{System.unique_integer()}", %{})
    assert :ets.info(OperationLatency, :size) == size
    assert :ok = OperationLatency.record(nil, 5)
    assert :ok = OperationLatency.record("test_echo", -5)
    assert :ok = OperationLatency.record(%{name: "test_echo"}, :not_a_duration)
    assert :ok = OperationLatency.record({:weird}, 1)
  end

  test "histograms are created once, even by racing processes" do
    name = "race_#{System.unique_integer([:positive])}"
    on_exit(fn -> :ets.delete(OperationLatency, name) end)

    1..16
    |> Enum.map(fn _ ->
      Task.async(fn -> for _ <- 1..100, do: OperationLatency.record(name, 7) end)
    end)
    |> Enum.each(&Task.await/1)

    assert count(name) == 1_600
  end

  test "record costs well under two microseconds" do
    OperationLatency.record("test_echo", 1)
    n = 200_000
    {us, :ok} = :timer.tc(fn -> loop(n) end)
    per_call_ns = us * 1000 / n
    IO.puts("OperationLatency.record/2: #{Float.round(per_call_ns, 1)} ns per call")
    assert per_call_ns < 2_000
  end

  defp loop(0), do: :ok

  defp loop(n) do
    OperationLatency.record("test_echo", n)
    loop(n - 1)
  end

  test "serialized/1 gives binaries that deserialize to the same figures" do
    {:ok, _} = ClusterScope.run("test_echo", %{text: "x"})
    assert %{"test_echo" => bin} = OperationLatency.serialized()
    assert %{"test_echo" => raw} = OperationLatency.serialized(compressed: false)
    assert <<0x1C849314::32, _::binary>> = bin
    assert <<0x1C849313::32, _::binary>> = raw
    {:ok, local} = OperationLatency.histogram("test_echo")

    for b <- [bin, raw] do
      {:ok, hist} = Histogram.deserialize(b)
      assert Histogram.stats(hist).count == Histogram.stats(local).count
    end
  end

  test "over HTTP: duration_us in the metadata, and the runs in GET /api/v1/metrics/operations",
       %{url: url} do
    runs = 12

    for i <- 1..runs do
      assert {200, %{"metadata" => meta}, _} = HTTP.get(url <> "/api/v1/test/echo?text=#{i}")
      assert is_integer(meta["duration_us"]) and meta["duration_us"] >= 0
    end

    assert {200, %{"data" => data, "metadata" => meta}, _} =
             HTTP.get(url <> "/api/v1/metrics/operations")

    assert meta["operation"] == "operation_metrics"
    assert meta["partial"] == false

    echo = Enum.find(data["operations"], &(&1["name"] == "test_echo"))
    assert echo["count"] >= runs

    for key <- ~w(p50_us p90_us p99_us p999_us max_us),
        do: assert(is_integer(echo[key]) and echo[key] >= 0)

    assert [%{"name" => "test_echo", "count" => c}] =
             Enum.filter(data["per_node"][Atom.to_string(node())], &(&1["name"] == "test_echo"))

    assert c >= runs

    # With node: this node only.
    assert {200, %{"data" => data}, _} =
             HTTP.get(url <> "/api/v1/metrics/operations?node=#{node()}")

    assert Map.keys(data["per_node"]) == [Atom.to_string(node())]
    assert {400, _, _} = HTTP.get(url <> "/api/v1/metrics/operations?node=nobody@nowhere")
  end

  @tag :cluster
  @tag timeout: 120_000
  test "a peer's runs show in the merged figures and per_node; a stopped peer gives node_errors" do
    {:ok, peer} = LocalCluster.start_peer(link: true)

    on_exit(fn ->
      LocalCluster.stop(peer)
      ClusterScope.Test.Cluster.forget([peer])
    end)

    # Visible to this node: a member of the cluster.
    assert peer.node in Node.list()

    local_before = count("node_build_info")
    for _ <- 1..3, do: {:ok, _} = ClusterScope.run("node_build_info", %{node: node()})

    for _ <- 1..7 do
      {:ok, _} =
        LocalCluster.call(peer, ClusterScope, :run, ["node_build_info", %{node: peer.node}])
    end

    {:ok, data, meta} = Runner.run("operation_metrics", %{})
    assert meta.partial == false and data.node_errors == []

    peer_figures = Enum.find(data.per_node[peer.node], &(&1.name == "node_build_info"))
    local_figures = Enum.find(data.per_node[node()], &(&1.name == "node_build_info"))
    merged = Enum.find(data.operations, &(&1.name == "node_build_info"))
    assert peer_figures.count == 7
    assert local_figures.count == local_before + 3
    assert merged.count == peer_figures.count + local_figures.count
    assert merged.max_us == max(peer_figures.max_us, local_figures.max_us)

    # Only the peer, asked by name.
    {:ok, data, _} = Runner.run("operation_metrics", %{node: peer.node})
    assert Map.keys(data.per_node) == [peer.node]
    assert Enum.find(data.operations, &(&1.name == "node_build_info")).count == 7

    # A stopped (SIGSTOP) peer: no answer within the node timeout, or the
    # connection drops first; either way a node error and a partial answer.
    assert peer.node in Node.list()
    :ok = ClusterScope.Test.Cluster.freeze(peer)
    on_exit(fn -> ClusterScope.Test.Cluster.resume(peer) end)

    {:ok, data, meta} = Runner.run("operation_metrics", %{}, timeout: 30_000)
    assert meta.partial == true
    assert [%{node: node, status: status}] = meta.node_errors
    assert node == peer.node and status in [:timeout, :down]
    assert Map.keys(data.per_node) == [node()]
    assert Enum.find(data.operations, &(&1.name == "node_build_info")).count == local_before + 3
  end
end
