defmodule ClusterScope.NativeTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Native

  test "the NIF is loaded on the test node and reports its build" do
    assert Native.loaded?()
    assert Native.status() == :loaded

    info = Native.build_info()
    assert info.core_version =~ ~r/^\d+\.\d+\.\d+$/
    # The crate and the Mix project are released together.
    assert info.core_version == ClusterScope.version()
    # NIF 2.15 is what OTP 25 loads; 2.17 would not load at all.
    assert info.nif_version == "2.15"

    [arch | _] =
      :erlang.system_info(:system_architecture) |> List.to_string() |> String.split("-")

    assert String.starts_with?(info.target, arch <> "-")
    assert info.profile == "release"
    assert is_integer(info.protocol_version) and info.protocol_version >= 1
  end

  test "build_info of the node includes OTP, Elixir and the core" do
    info = ClusterScope.build_info()
    assert info.node == node()
    assert info.otp_release == List.to_string(:erlang.system_info(:otp_release))
    assert info.elixir_version == System.version()
    assert %{core_version: _} = info.native
  end

  test "the NIF path points at priv/native unless configured" do
    assert Native.nif_path() |> String.ends_with?("priv/native/libcluster_scope_nif")
    assert File.exists?(Native.nif_path() <> ".so")
  end

  describe "one error shape" do
    # Every NIF with an error path, called with bad input, and the code and a
    # piece of the detail it must answer with. Each entry is
    # {name, args_fun, code, detail_fragment}; args_fun gets valid resources
    # to build arguments from.
    @big_event :binary.copy(<<0>>, 64 * 1024 + 1)
    @cases [
      # json
      {:json_encode, &__MODULE__.args_json_encode/1, :unsupported, "cannot encode a tuple"},
      {:json_encode_dirty, &__MODULE__.args_json_encode/1, :unsupported, "at $.a"},
      {:json_decode, &__MODULE__.args_json_decode/1, :syntax, "line 1"},
      {:json_decode_dirty, &__MODULE__.args_json_decode/1, :syntax, "invalid JSON"},
      {:json_encode, &__MODULE__.args_json_bad_limit/1, :invalid_limits, "max_bytes:"},
      {:json_decode, &__MODULE__.args_json_not_binary/1, :invalid_argument, "input:"},
      # metrics
      {:hist_new, &__MODULE__.args_hist_config/1, :invalid_config, "lowest"},
      {:hist_new_dirty, &__MODULE__.args_hist_config/1, :invalid_config, "lowest"},
      {:hist_record, &__MODULE__.args_not_hist_value/1, :invalid_value, "not a histogram"},
      {:hist_record_n, &__MODULE__.args_not_hist_value_n/1, :invalid_value, "not a histogram"},
      {:hist_record_batch, &__MODULE__.args_bad_batch/1, :invalid_batch, "multiple of 8"},
      {:hist_record_batch_dirty, &__MODULE__.args_bad_batch/1, :invalid_batch, "3 bytes"},
      {:hist_quantiles, &__MODULE__.args_bad_quantile/1, :invalid_quantile,
       "not a number between"},
      {:hist_quantiles_dirty, &__MODULE__.args_bad_quantile/1, :invalid_quantile, "position 0"},
      {:hist_stats, &__MODULE__.args_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_stats_dirty, &__MODULE__.args_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_reset, &__MODULE__.args_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_reset_dirty, &__MODULE__.args_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_merge, &__MODULE__.args_merge_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_merge_dirty, &__MODULE__.args_merge_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_serialize, &__MODULE__.args_not_hist/1, :invalid_value, "not a histogram"},
      {:hist_serialize_uncompressed, &__MODULE__.args_not_hist/1, :invalid_value,
       "not a histogram"},
      {:hist_deserialize, &__MODULE__.args_junk/1, :invalid_serialized, "HdrHistogram"},
      {:hist_merge_serialized, &__MODULE__.args_empty_list/1, :empty, "none given"},
      # metrics, arguments of the wrong type
      {:hist_new, &__MODULE__.args_hist_config_text/1, :invalid_config, "highest:"},
      {:hist_record, &__MODULE__.args_hist_negative/1, :invalid_value, "value:"},
      {:hist_record_n, &__MODULE__.args_hist_negative_n/1, :invalid_value, "n:"},
      {:hist_record_batch, &__MODULE__.args_hist_list_batch/1, :invalid_batch, "batch:"},
      {:hist_quantiles, &__MODULE__.args_hist_atom_quantiles/1, :invalid_quantile, "quantiles:"},
      {:hist_deserialize, &__MODULE__.args_integer/1, :invalid_serialized, "serialized:"},
      {:hist_merge_serialized, &__MODULE__.args_junk/1, :invalid_serialized, "serialized:"},
      # partition
      {:phi_new, &__MODULE__.args_phi_config/1, :invalid_config, "window"},
      {:phi_heartbeat, &__MODULE__.args_phi_not_ref/1, :invalid_argument, "detectors:"},
      {:phi_heartbeat, &__MODULE__.args_phi_full/1, :too_many_peers, "max_peers"},
      {:phi_get, &__MODULE__.args_phi_bad_time/1, :invalid_argument, "now_ms:"},
      {:phi_all, &__MODULE__.args_phi_all/1, :invalid_argument, "detectors:"},
      {:phi_all_dirty, &__MODULE__.args_phi_all/1, :invalid_argument, "detectors:"},
      {:phi_remove, &__MODULE__.args_phi_bad_peer/1, :invalid_argument, "peer:"},
      {:partition_classify, &__MODULE__.args_observation/1, :invalid_observation, "nodes"},
      {:partition_classify_dirty, &__MODULE__.args_observation/1, :invalid_observation, "nodes"},
      {:partition_heals, &__MODULE__.args_observations/1, :invalid_observation, "prev"},
      {:partition_heals_dirty, &__MODULE__.args_observations/1, :invalid_observation, "prev"},
      # placement
      {:placement_place, &__MODULE__.args_placement_strategy/1, :invalid_option, "strategy:"},
      {:placement_place_dirty, &__MODULE__.args_placement_nodes/1, :invalid_argument,
       "nodes[1]:"},
      # procs
      {:procs_pids_new, &__MODULE__.args_not_pids/1, :invalid_argument, "pids:"},
      {:procs_pids_next, &__MODULE__.args_pids_next/1, :invalid_argument, "n:"},
      {:procs_snapshot_push, &__MODULE__.args_bad_rows/1, :invalid_row, "row 1: invalid"},
      {:procs_snapshot_push_dirty, &__MODULE__.args_bad_rows/1, :invalid_row, "row 1"},
      {:procs_snapshot_info, &__MODULE__.args_not_snapshot/1, :invalid_argument, "snapshot:"},
      {:procs_summary, &__MODULE__.args_summary_bad_k/1, :invalid_option, "k"},
      {:procs_summary_merge, &__MODULE__.args_empty_list/1, :invalid_argument, "summaries"},
      {:procs_summary_to_term, &__MODULE__.args_junk/1, :invalid_summary, "process summary"},
      {:procs_window, &__MODULE__.args_window_bad_interval/1, :invalid_argument, "interval_ms"},
      {:procs_window_merge, &__MODULE__.args_junk_list/1, :invalid_window, "process window"},
      {:procs_window_to_term, &__MODULE__.args_junk/1, :invalid_window, "process window"},
      {:procs_page, &__MODULE__.args_page_bad_sort/1, :invalid_option, "sort_by"},
      {:procs_pids_new, &__MODULE__.args_pids_bad_exclude/1, :invalid_argument, "exclude:"},
      {:procs_column_push, &__MODULE__.args_column_uneven/1, :invalid_argument, "values:"},
      {:procs_column_info, &__MODULE__.args_not_snapshot/1, :invalid_argument, "column:"},
      {:procs_column_page, &__MODULE__.args_column_bad_limit/1, :invalid_option, "limit"},
      {:procs_window_details, &__MODULE__.args_window_details_junk/1, :invalid_window,
       "process window"},
      # throttle
      {:throttle_new, &__MODULE__.args_throttle_no_rate/1, :invalid_option, "rate"},
      {:throttle_admit, &__MODULE__.args_throttle_not_session/1, :invalid_argument, "session:"},
      {:throttle_push, &__MODULE__.args_throttle_push_big/1, :too_large, "over the limit"},
      {:throttle_admit_push, &__MODULE__.args_throttle_admit_push_big/1, :too_large,
       "over the limit"},
      {:throttle_read, &__MODULE__.args_throttle_read_zero/1, :invalid_argument, "limit:"},
      {:throttle_stats, &__MODULE__.args_not_session/1, :invalid_argument, "session:"},
      {:throttle_overhead, &__MODULE__.args_throttle_bad_now/1, :invalid_argument, "now_ms:"},
      {:throttle_set_rate, &__MODULE__.args_throttle_zero_rate/1, :invalid_option, "rate"},
      # drift
      {:drift_digest, &__MODULE__.args_drift_bad_item/1, :invalid_argument, "items[1]:"},
      {:drift_select, &__MODULE__.args_drift_bad_wanted/1, :invalid_argument, "wanted:"},
      {:drift_differing, &__MODULE__.args_drift_bad_digest/1, :invalid_argument, "digests[0]:"},
      {:drift_compare, &__MODULE__.args_drift_bad_nodes/1, :invalid_argument, "nodes[0]:"},
      # rank (node views)
      {:rank_merge_top, &__MODULE__.args_rank_bad_list/1, :invalid_argument, "lists[1]:"},
      {:rank_merge_top, &__MODULE__.args_rank_bad_limit/1, :invalid_option, "limit:"}
    ]

    # Functions of ClusterScope.Native that are not NIFs with an error path.
    @no_error_path [
      :__load_nif__,
      :nif_path,
      :loaded?,
      :status,
      :build_info,
      :error_codes,
      :procs_snapshot_new,
      :procs_column_new
    ]

    setup do
      {:ok, hist} = Native.hist_new(1, 1_000, 2)
      {:ok, detectors} = Native.phi_new(10, 10.0, 10.0, 100.0, 1)
      :ok = Native.phi_heartbeat(detectors, "a", 0)
      cursor = Native.procs_pids_new([self()])
      snapshot = Native.procs_snapshot_new()
      {:ok, throttle} = Native.throttle_new(%{rate: 10, max_events: 10})

      %{
        hist: hist,
        detectors: detectors,
        cursor: cursor,
        snapshot: snapshot,
        throttle: throttle
      }
    end

    test "every NIF answers bad input, of any type, with {:error, {code, detail}}", ctx do
      for {name, args, code, fragment} <- @cases do
        args = args.(ctx)
        result = apply(Native, name, args)

        assert {:error, {^code, detail}} = result,
               "#{name}#{inspect(args, limit: 5)} gave #{inspect(result, limit: 10)}"

        assert is_atom(code) and code in Native.error_codes()
        assert is_binary(detail) and String.valid?(detail)
        assert detail =~ fragment, "#{name}: #{inspect(detail)} lacks #{inspect(fragment)}"
      end
    end

    test "a push while a dirty call reads the snapshot: {:error, {:busy, detail}}" do
      snapshot = Native.procs_snapshot_new()

      for chunk <- Enum.chunk_every(1..100_000, 10_000) do
        rows = for i <- chunk, do: put_elem(row(self()), 0, i)
        assert :ok = Native.procs_snapshot_push_dirty(snapshot, rows)
      end

      # Summaries one after the other hold the snapshot's read lock nearly
      # all the time; a push on a normal scheduler does not wait for it.
      reader =
        spawn_link(fn ->
          Stream.repeatedly(fn -> Native.procs_summary(snapshot, "n@h", %{k: 10}) end)
          |> Stream.run()
        end)

      deadline = System.monotonic_time(:millisecond) + 10_000

      busy =
        Stream.repeatedly(fn -> Native.procs_snapshot_push(snapshot, []) end)
        |> Enum.find(fn answer ->
          answer != :ok or System.monotonic_time(:millisecond) > deadline
        end)

      Process.unlink(reader)
      Process.exit(reader, :kill)

      assert {:error, {:busy, detail}} = busy
      assert detail =~ "snapshot:" and detail =~ "procs_snapshot_push_dirty/2"
      assert :busy in Native.error_codes()
    end

    test "the table covers every NIF with an error path" do
      nifs =
        for {name, _arity} <- Native.__info__(:functions),
            name not in @no_error_path,
            uniq: true,
            do: name

      covered = @cases |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
      assert Enum.sort(nifs) == Enum.sort(covered)
    end

    test "error_codes/0 lists stable snake_case atoms, each once" do
      codes = Native.error_codes()
      assert length(codes) == length(Enum.uniq(codes))

      for code <- codes do
        assert Atom.to_string(code) =~ ~r/^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*$/
      end
    end

    test "ClusterScope.Error classifies every native code" do
      {input, other} = ClusterScope.Error.native_codes()
      assert Enum.sort(input ++ other) == Enum.sort(Native.error_codes())

      for code <- input do
        e = ClusterScope.Error.normalize({code, "field x: bad"})
        assert e.code == :invalid_params
        assert e.message == "field x: bad"
        assert e.details == %{native_code: code}
      end

      for code <- other do
        e = ClusterScope.Error.normalize({code, "held"})
        assert e.code == :internal
        assert e.message == "held"
        assert e.details == %{native_code: code}
      end

      # What a NIF answers goes through as is.
      {:error, reason} = Native.json_decode("[", 100, 10)

      assert %ClusterScope.Error{code: :invalid_params, message: "invalid JSON" <> _} =
               ClusterScope.Error.normalize(reason)

      # Not a native error: an unknown {atom, binary} stays internal and inspected.
      assert %{code: :internal, message: "operation failed: " <> _} =
               ClusterScope.Error.normalize({:strange, "x"})
    end
  end

  # -- arguments of the bad calls (public: module attributes hold captures) --

  @doc false
  def args_json_encode(_), do: [%{"a" => {:tuple}}, 1_000, 10]
  @doc false
  def args_json_decode(_), do: ["[1,", 1_000, 10]
  @doc false
  def args_json_bad_limit(_), do: [1, -1, 10]
  @doc false
  def args_json_not_binary(_), do: [123, 1_000, 10]
  @doc false
  def args_hist_config(_), do: [0, 10, 3]
  @doc false
  def args_hist_config_text(_), do: [1, "big", 3]
  @doc false
  def args_hist_negative(ctx), do: [ctx.hist, -1]
  @doc false
  def args_hist_negative_n(ctx), do: [ctx.hist, 1, -1]
  @doc false
  def args_hist_list_batch(ctx), do: [ctx.hist, [1, 2]]
  @doc false
  def args_hist_atom_quantiles(ctx), do: [ctx.hist, :p99]
  @doc false
  def args_integer(_), do: [42]
  @doc false
  def args_not_hist_value(_), do: [make_ref(), 1]
  @doc false
  def args_not_hist_value_n(_), do: [make_ref(), 1, 2]
  @doc false
  def args_bad_batch(ctx), do: [ctx.hist, <<1, 2, 3>>]
  @doc false
  def args_bad_quantile(ctx), do: [ctx.hist, [2.0]]
  @doc false
  def args_not_hist(_), do: [make_ref()]
  @doc false
  def args_merge_not_hist(ctx), do: [ctx.hist, make_ref()]
  @doc false
  def args_junk(_), do: ["junk"]
  @doc false
  def args_junk_list(_), do: [["junk"]]
  @doc false
  def args_empty_list(_), do: [[]]
  @doc false
  def args_phi_config(_), do: [0, 10.0, 10.0, 100.0, 10]
  @doc false
  def args_phi_not_ref(_), do: [make_ref(), "a", 0]
  @doc false
  def args_phi_full(ctx), do: [ctx.detectors, "b", 10]
  @doc false
  def args_phi_bad_time(ctx), do: [ctx.detectors, "a", "later"]
  @doc false
  def args_phi_all(_), do: [:not_a_ref, 0]
  @doc false
  def args_phi_bad_peer(ctx), do: [ctx.detectors, {:a}]
  @doc false
  def args_observation(_), do: [%{}]
  @doc false
  def args_observations(_), do: [:nope, %{}]
  @doc false
  def args_placement_strategy(_), do: ["random", 1, [{0.0, 0}], 0, 1.0]
  @doc false
  def args_rank_bad_list(_), do: [[[1, 2], [3, -1]], 5]
  @doc false
  def args_rank_bad_limit(_), do: [[[1]], 0]
  @doc false
  def args_placement_nodes(_), do: ["spread", 1, [{0.0, 0}, :x], 0, 1.0]
  @doc false
  def args_drift_bad_item(_), do: [[{"a", "1"}, {"b", 2}], 16]
  @doc false
  def args_drift_bad_wanted(_), do: [[{"a", "1"}], 16, [-1]]
  @doc false
  def args_drift_bad_digest(_), do: [["x"]]
  @doc false
  def args_drift_bad_nodes(_), do: [[:x]]
  @doc false
  def args_not_pids(_), do: [[self(), :x]]
  @doc false
  def args_pids_next(ctx), do: [ctx.cursor, 0]
  @doc false
  def args_bad_rows(ctx), do: [ctx.snapshot, [row(self()), {:bad}]]
  @doc false
  def args_not_snapshot(_), do: [make_ref()]
  @doc false
  def args_pids_bad_exclude(_), do: [[self()], [:x]]
  @doc false
  def args_column_uneven(_), do: [Native.procs_column_new(), [self()], []]
  @doc false
  def args_column_bad_limit(_), do: [Native.procs_column_new(), %{limit: 0}]
  @doc false
  def args_window_details_junk(ctx), do: ["junk", ctx.snapshot]
  @doc false
  def args_summary_bad_k(ctx), do: [ctx.snapshot, "n@h", %{k: 0}]
  @doc false
  def args_window_bad_interval(ctx), do: [ctx.snapshot, ctx.snapshot, "n@h", :soon, %{}]
  @doc false
  def args_page_bad_sort(ctx), do: [ctx.snapshot, %{sort_by: :age}]
  @doc false
  def args_throttle_no_rate(_), do: [%{max_events: 10}]
  @doc false
  def args_throttle_not_session(_), do: [make_ref(), 0, 1]
  @doc false
  def args_throttle_push_big(ctx), do: [ctx.throttle, 0, 1, @big_event]
  @doc false
  def args_throttle_admit_push_big(ctx), do: [ctx.throttle, 0, 0, 1, @big_event]
  @doc false
  def args_throttle_read_zero(ctx), do: [ctx.throttle, 0, 0]
  @doc false
  def args_not_session(_), do: [make_ref()]
  @doc false
  def args_throttle_bad_now(ctx), do: [ctx.throttle, :now]
  @doc false
  def args_throttle_zero_rate(ctx), do: [ctx.throttle, 0]

  # A valid row (ClusterScope.Agent.Processes.Rows' 13-tuple), so that the bad one is
  # the second: the detail names its index.
  defp row(pid) do
    {pid, 1, 1, 0, 1, 1, 1, :running, {:m, :f, 0}, [], {:m, :f, 0}, :undefined, :plain}
  end
end
