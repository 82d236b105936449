defmodule ClusterScope.Native do
  @moduledoc """
  The only module with NIF stubs: the bridge to ClusterScope's Rust core.

  The library is loaded from `priv/native/libcluster_scope_nif.so` when this
  module is loaded (`@on_load`). The path can be overridden with
  `config :cluster_scope, native_path: "/path/to/libcluster_scope_nif"` (no
  extension), for instance to run a core built elsewhere.

  ## Why loading never fails

  A debugging library must never stop the application it observes. If the
  shared library is missing, corrupt, or built for another NIF version, the
  `@on_load` hook logs one clear error and still returns `:ok`, so the module
  loads and every stub answers `{:error, :native_unavailable}`. Callers check
  `loaded?/0` or handle that error; the host keeps running.

  ## Errors

  Every NIF answers an error in one shape, `{:error, {code, detail}}`, built
  in one place (`native/cluster_scope_nif/src/error.rs`):

    * `code` - an atom, snake_case and stable, from the fixed list of
      `error_codes/0` (`t:error_code/0`); atoms are never made from input;
    * `detail` - a binary for people that names the field or the cause
      (`"row 3: invalid key"`, `"invalid option sort_by: expected ..."`,
      `"invalid observation, reach[2][5]: expected ..."`).

  Every NIF reads its arguments itself, so an argument of the wrong type is
  such an error too (`{:invalid_value, "value: expected an integer from 0 to
  2^64 - 1"}`), never an `ArgumentError`. `ClusterScope.Error.normalize/1`
  turns such an error into the envelope of every surface: `invalid_params`
  for the codes that refuse input, else `internal`.

  Two answers are not in that shape. When the library is not loaded, every
  stub answers `{:error, :native_unavailable}` (a bare atom: not an error of
  a NIF but the absence of one, which callers match on and `normalize/1`
  maps to the `native_unavailable` code). And `:use_dirty` (histograms,
  partition classification past 200 nodes, `phi_all` past 2,000 peers) and
  the throttle's decisions (`:drop`, `:limit`, ...) are answers, not errors.

  ## Cost

  Every NIF here either finishes in well under a millisecond on a normal
  scheduler or is marked dirty in the Rust wrapper. A panic inside the core
  unwinds into an `ErlangError` (`:nif_panicked`) in the calling process and
  never takes the VM down.
  """

  require Logger

  @on_load :__load_nif__
  @lib "libcluster_scope_nif"
  @status_key {__MODULE__, :status}

  @typedoc "The code of a NIF error; `error_codes/0` lists them."
  @type error_code ::
          :invalid_argument
          | :invalid_option
          | :invalid_config
          | :invalid_value
          | :invalid_limits
          | :too_large
          | :invalid_utf8
          | :syntax
          | :non_finite_float
          | :unsupported
          | :too_deep
          | :integer_out_of_range
          | :invalid_quantile
          | :invalid_batch
          | :invalid_serialized
          | :empty
          | :invalid_observation
          | :invalid_row
          | :invalid_summary
          | :invalid_window
          | :too_many_peers
          | :too_many_rows
          | :busy
          | :serialize_failed

  @typedoc "How every NIF answers an error: `{:error, error()}`."
  @type error :: {error_code(), String.t()}

  @typedoc "Facts about the loaded Rust core."
  @type build_info :: %{
          core_version: String.t(),
          nif_version: String.t(),
          target: String.t(),
          profile: String.t(),
          protocol_version: non_neg_integer()
        }

  @doc false
  def __load_nif__ do
    path = nif_path()

    status =
      case :erlang.load_nif(String.to_charlist(path), 0) do
        :ok ->
          :loaded

        {:error, {:reload, _}} ->
          :loaded

        {:error, {reason, text}} ->
          Logger.error(
            "ClusterScope could not load its native core from #{path}.so " <>
              "(#{reason}: #{text}). ClusterScope keeps running without it: functions " <>
              "backed by the core return {:error, :native_unavailable}. Rebuild with " <>
              "`mix compile` (needs cargo) or set `config :cluster_scope, native_path: ...`."
          )

          {:unavailable, {reason, List.to_string(text)}}
      end

    :persistent_term.put(@status_key, status)
    :ok
  end

  @doc """
  Where the NIF library is loaded from (without the `.so` extension).
  """
  @spec nif_path() :: String.t()
  def nif_path do
    case :application.get_env(:cluster_scope, :native_path) do
      {:ok, path} when is_binary(path) ->
        path

      _ ->
        case :code.priv_dir(:cluster_scope) do
          {:error, _} -> Path.join(["priv", "native", @lib])
          dir -> Path.join([List.to_string(dir), "native", @lib])
        end
    end
  end

  @doc """
  Whether the Rust core is loaded. Cheap: reads a persistent term.
  """
  @spec loaded?() :: boolean()
  def loaded?, do: status() == :loaded

  @doc """
  `:loaded`, or `{:unavailable, {reason, message}}` with why loading failed.
  """
  @spec status() :: :loaded | {:unavailable, {atom(), String.t()}}
  def status, do: :persistent_term.get(@status_key, {:unavailable, {:not_loaded, "not loaded"}})

  @doc """
  Facts about the loaded core: crate version, NIF version, target triple,
  cargo profile and the inter-node protocol version.
  """
  @spec build_info() :: build_info() | {:error, :native_unavailable}
  def build_info, do: unavailable()

  @doc """
  Every code a NIF error can carry (see "Errors" above), in the core's order.
  Constants only.
  """
  @spec error_codes() :: [error_code()] | {:error, :native_unavailable}
  def error_codes, do: unavailable()

  # JSON codec (see ClusterScope.JSON, which validates the options and picks
  # the variant). The plain NIFs run on the caller's scheduler and are meant
  # for inputs of at most 16 KiB of JSON (ClusterScope.JSON's
  # @dirty_threshold, read or estimated); the `_dirty` ones run on a dirty CPU
  # scheduler. All four return `{:ok, result}` or `{:error, {code, detail}}`.

  @doc false
  @spec json_encode(term(), pos_integer(), non_neg_integer()) ::
          {:ok, binary()} | {:error, error()} | {:error, :native_unavailable}
  def json_encode(_term, _max_bytes, _max_depth), do: unavailable()

  @doc false
  @spec json_encode_dirty(term(), pos_integer(), non_neg_integer()) ::
          {:ok, binary()} | {:error, error()} | {:error, :native_unavailable}
  def json_encode_dirty(_term, _max_bytes, _max_depth), do: unavailable()

  @doc false
  @spec json_decode(binary(), pos_integer(), non_neg_integer()) ::
          {:ok, term()} | {:error, error()} | {:error, :native_unavailable}
  def json_decode(_json, _max_bytes, _max_depth), do: unavailable()

  @doc false
  @spec json_decode_dirty(binary(), pos_integer(), non_neg_integer()) ::
          {:ok, term()} | {:error, error()} | {:error, :native_unavailable}
  def json_decode_dirty(_json, _max_bytes, _max_depth), do: unavailable()

  # Partition detection (rules in cluster_scope_core's `partition` module).
  # A detectors reference holds one phi-accrual detector per peer (a binary
  # or atom name); times are milliseconds, floats or integers, from one
  # monotonic clock. `partition_classify/1` and `partition_heals/2` answer
  # `:use_dirty` past 200 nodes and `phi_all/2` past 2,000 peers (before
  # doing the work): their `_dirty` variants (dirty CPU scheduler) do it
  # (callers: Cluster.Observation, Cluster.Heartbeat). Bad input gives
  # `{:error, {code, detail}}` with code `:invalid_config`,
  # `:invalid_argument`, `:too_many_peers` or `:invalid_observation` and a
  # detail naming the field, never an exception.

  @doc false
  @spec phi_new(pos_integer(), number(), number(), number(), pos_integer()) ::
          {:ok, reference()} | {:error, error()} | {:error, :native_unavailable}
  def phi_new(_window, _min_std_dev_ms, _acceptable_pause_ms, _first_estimate_ms, _max_peers),
    do: unavailable()

  @doc false
  @spec phi_heartbeat(reference(), binary() | atom(), number()) ::
          :ok | {:error, error()} | {:error, :native_unavailable}
  def phi_heartbeat(_detectors, _peer, _now_ms), do: unavailable()

  @doc false
  @spec phi_get(reference(), binary() | atom(), number()) ::
          float() | nil | {:error, error()} | {:error, :native_unavailable}
  def phi_get(_detectors, _peer, _now_ms), do: unavailable()

  @doc false
  @spec phi_all(reference(), number()) ::
          [map()] | :use_dirty | {:error, error()} | {:error, :native_unavailable}
  def phi_all(_detectors, _now_ms), do: unavailable()

  @doc false
  @spec phi_all_dirty(reference(), number()) ::
          [map()] | {:error, error()} | {:error, :native_unavailable}
  def phi_all_dirty(_detectors, _now_ms), do: unavailable()

  @doc false
  @spec phi_remove(reference(), binary() | atom()) ::
          :ok | {:error, error()} | {:error, :native_unavailable}
  def phi_remove(_detectors, _peer), do: unavailable()

  # placement.rs: sandbox placement; the caller is ClusterScope.Sandbox.Placement.
  @doc false
  @spec placement_place(
          binary(),
          non_neg_integer(),
          [{float(), non_neg_integer()}],
          non_neg_integer(),
          float()
        ) ::
          {:ok, [non_neg_integer()]} | {:error, error()} | {:error, :native_unavailable}
  def placement_place(_strategy, _count, _nodes, _offset, _weight), do: unavailable()

  @doc false
  @spec placement_place_dirty(
          binary(),
          non_neg_integer(),
          [{float(), non_neg_integer()}],
          non_neg_integer(),
          float()
        ) ::
          {:ok, [non_neg_integer()]} | {:error, error()} | {:error, :native_unavailable}
  def placement_place_dirty(_strategy, _count, _nodes, _offset, _weight), do: unavailable()

  @doc false
  @spec partition_classify(map()) ::
          {:ok, map()} | :use_dirty | {:error, error()} | {:error, :native_unavailable}
  def partition_classify(_observation), do: unavailable()

  @doc false
  @spec partition_classify_dirty(map()) ::
          {:ok, map()} | {:error, error()} | {:error, :native_unavailable}
  def partition_classify_dirty(_observation), do: unavailable()

  @doc false
  @spec partition_heals(map(), map()) ::
          {:ok, [{binary(), binary()}]}
          | :use_dirty
          | {:error, error()}
          | {:error, :native_unavailable}
  def partition_heals(_prev, _next), do: unavailable()

  @doc false
  @spec partition_heals_dirty(map(), map()) ::
          {:ok, [{binary(), binary()}]}
          | {:error, error()}
          | {:error, :native_unavailable}
  def partition_heals_dirty(_prev, _next), do: unavailable()

  # Histograms (see ClusterScope.Metrics.Histogram, which validates the
  # arguments and picks the variant). `ref` is a resource reference. On a
  # histogram of over 1 MiB of counts, the plain new/quantiles/stats/reset/
  # merge answer `:use_dirty` and their `_dirty` twins (dirty CPU scheduler)
  # do the work; batch records over 64 KiB use `hist_record_batch_dirty`;
  # serialize, deserialize and merge_serialized are always dirty. Errors are
  # `{:error, {code, detail}}`; a term that is not a histogram reference gives
  # `{:error, {:invalid_value, "not a histogram reference"}}`.

  @doc false
  def hist_new(_lowest, _highest, _significant_figures), do: unavailable()
  @doc false
  def hist_new_dirty(_lowest, _highest, _significant_figures), do: unavailable()
  @doc false
  def hist_record(_ref, _value), do: unavailable()
  @doc false
  def hist_record_n(_ref, _value, _n), do: unavailable()
  @doc false
  def hist_record_batch(_ref, _binary), do: unavailable()
  @doc false
  def hist_record_batch_dirty(_ref, _binary), do: unavailable()
  @doc false
  def hist_quantiles(_ref, _quantiles), do: unavailable()
  @doc false
  def hist_quantiles_dirty(_ref, _quantiles), do: unavailable()
  @doc false
  def hist_stats(_ref), do: unavailable()
  @doc false
  def hist_stats_dirty(_ref), do: unavailable()
  @doc false
  def hist_reset(_ref), do: unavailable()
  @doc false
  def hist_reset_dirty(_ref), do: unavailable()
  @doc false
  def hist_merge(_into, _from), do: unavailable()
  @doc false
  def hist_merge_dirty(_into, _from), do: unavailable()
  @doc false
  def hist_serialize(_ref), do: unavailable()
  @doc false
  def hist_serialize_uncompressed(_ref), do: unavailable()
  @doc false
  def hist_deserialize(_binary), do: unavailable()
  @doc false
  def hist_merge_serialized(_binaries), do: unavailable()

  # Process tables (rules in cluster_scope_core's `procs` module; shapes in
  # native/cluster_scope_nif/src/procs.rs). Pid cursors and snapshots are
  # resource references. `procs_snapshot_push/2` runs on the caller's
  # scheduler (batches of about 1,000 rows, ~0.15 ms) and answers
  # `{:error, {:busy, detail}}` while a dirty call reads the snapshot;
  # `procs_snapshot_push_dirty/2` waits instead. Summaries, windows and pages
  # are dirty CPU calls. A column (`procs_column_*`) holds one number of
  # every process, 16 bytes each: pushes of about 1,000 pids and values run
  # on the caller's scheduler, pages are dirty. Errors are `{:error, {code, detail}}` with code
  # `:invalid_row` (the detail names the row's index and field),
  # `:invalid_option`, `:invalid_argument` (the detail starts with the name),
  # `:too_many_rows`, `:invalid_summary`, `:invalid_window` or `:busy`.

  @doc false
  def procs_pids_new(_pids), do: unavailable()
  @doc false
  def procs_pids_new(_pids, _exclude), do: unavailable()
  @doc false
  def procs_pids_next(_cursor, _n), do: unavailable()
  @doc false
  def procs_column_new, do: unavailable()
  @doc false
  def procs_column_push(_column, _pids, _values), do: unavailable()
  @doc false
  def procs_column_info(_column), do: unavailable()
  @doc false
  def procs_column_page(_column, _opts), do: unavailable()
  @doc false
  def procs_snapshot_new, do: unavailable()
  @doc false
  def procs_snapshot_push(_snapshot, _rows), do: unavailable()
  @doc false
  def procs_snapshot_push_dirty(_snapshot, _rows), do: unavailable()
  @doc false
  def procs_snapshot_info(_snapshot), do: unavailable()
  @doc false
  def procs_summary(_snapshot, _node_name, _opts), do: unavailable()
  @doc false
  def procs_summary_merge(_binaries), do: unavailable()
  @doc false
  def procs_summary_to_term(_binary), do: unavailable()
  @doc false
  def procs_window(_before, _after, _node_name, _interval_ms, _opts), do: unavailable()
  @doc false
  def procs_window_merge(_binaries), do: unavailable()
  @doc false
  def procs_window_details(_window, _details), do: unavailable()
  @doc false
  def procs_window_to_term(_binary), do: unavailable()
  @doc false
  def procs_page(_snapshot, _opts), do: unavailable()

  # Throttled tracing (rules in cluster_scope_core's `throttle` module;
  # shapes and costs in native/cluster_scope_nif/src/throttle.rs). A session
  # is a resource reference; every call runs on the caller's scheduler and
  # is O(1), O(event size <= 64 KiB) or O(limit <= 1000, <= 256 KiB copied).
  # Times: `now_ms` from one monotonic clock (may be negative), `ts_us` any
  # integer; keys are non-negative integers. Errors are `{:error, {code,
  # detail}}` with code `:invalid_option`, `:invalid_argument` (the detail
  # starts with the option's or argument's name) or `:too_large` (event over
  # 64 KiB, refused, not truncated).

  @doc false
  @spec throttle_new(map()) ::
          {:ok, reference()} | {:error, error()} | {:error, :native_unavailable}
  def throttle_new(_opts), do: unavailable()

  @doc false
  @spec throttle_admit(reference(), integer(), non_neg_integer()) ::
          :keep
          | :drop
          | {:pause, integer()}
          | :limit
          | {:error, error()}
          | {:error, :native_unavailable}
  def throttle_admit(_session, _now_ms, _key), do: unavailable()

  @doc false
  @spec throttle_push(reference(), integer(), non_neg_integer(), binary()) ::
          :ok | {:error, error()} | {:error, :native_unavailable}
  def throttle_push(_session, _ts_us, _key, _binary), do: unavailable()

  @doc false
  @spec throttle_admit_push(reference(), integer(), integer(), non_neg_integer(), binary()) ::
          :keep
          | :drop
          | {:pause, integer()}
          | :limit
          | {:error, error()}
          | {:error, :native_unavailable}
  def throttle_admit_push(_session, _now_ms, _ts_us, _key, _binary), do: unavailable()

  @doc false
  @spec throttle_read(reference(), non_neg_integer(), pos_integer()) ::
          {:ok, [{pos_integer(), integer(), non_neg_integer(), binary()}], non_neg_integer(),
           non_neg_integer()}
          | {:error, error()}
          | {:error, :native_unavailable}
  def throttle_read(_session, _after_seq, _limit), do: unavailable()

  @doc false
  @spec throttle_stats(reference()) :: map() | {:error, error()} | {:error, :native_unavailable}
  def throttle_stats(_session), do: unavailable()

  @doc false
  @spec throttle_overhead(reference(), integer()) ::
          map() | {:error, error()} | {:error, :native_unavailable}
  def throttle_overhead(_session, _now_ms), do: unavailable()

  @doc false
  @spec throttle_set_rate(reference(), pos_integer()) ::
          :ok | {:error, error()} | {:error, :native_unavailable}
  def throttle_set_rate(_session, _rate), do: unavailable()

  # drift.rs: digests and comparison of named, versioned items across
  # nodes; the callers are ClusterScope.NodeViews.CodeDrift and
  # ClusterScope.NodeViews.Applications.
  @doc false
  @spec drift_digest([{binary(), binary()}], pos_integer()) ::
          {:ok, binary()} | {:error, error()} | {:error, :native_unavailable}
  def drift_digest(_items, _buckets), do: unavailable()

  @doc false
  @spec drift_select([{binary(), binary()}], pos_integer(), [non_neg_integer()]) ::
          {:ok, [{binary(), binary()}]} | {:error, error()} | {:error, :native_unavailable}
  def drift_select(_items, _buckets, _wanted), do: unavailable()

  @doc false
  @spec drift_differing([binary()]) ::
          {:ok, [non_neg_integer()]} | {:error, error()} | {:error, :native_unavailable}
  def drift_differing(_digests), do: unavailable()

  @doc false
  @spec drift_compare([[{binary(), binary()}]]) ::
          {:ok, [{binary(), [{binary(), [non_neg_integer()]}], [non_neg_integer()]}]}
          | {:error, error()}
          | {:error, :native_unavailable}
  def drift_compare(_nodes), do: unavailable()

  # Node views (rules in cluster_scope_core's `rank` module): the merge of
  # per-node ranked lists of ETS tables, ports and sockets. Dirty.
  @doc false
  @spec rank_merge_top([[non_neg_integer()]], pos_integer()) ::
          {:ok, [{non_neg_integer(), non_neg_integer()}], boolean()}
          | {:error, {atom(), binary()}}
          | {:error, :native_unavailable}
  def rank_merge_top(_lists, _limit), do: unavailable()

  defp unavailable, do: {:error, :native_unavailable}
end
