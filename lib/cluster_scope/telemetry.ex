defmodule ClusterScope.Telemetry do
  @moduledoc """
  ClusterScope's `:telemetry` events, emitted only when the `:telemetry`
  application is running. ClusterScope does not depend on the package:
  every call goes through `apply/3`, so it compiles and runs without it,
  and anything a handler raises or throws is caught here.

  Without Hex, `:cluster_scope`'s application does not list `:telemetry`,
  so in a host it can start before `:telemetry` does, or run where the
  module is loaded but the application never started. Emitting then would
  make `:telemetry` log "Failed to lookup telemetry handlers" for every
  event; nobody can have attached a handler anyway (attaching needs the
  running application), so nothing is emitted until it runs.

  ## Events

    * `[:cluster_scope, :operation, :start]` - an operation starts
      executing. Measurements `%{system_time: native, monotonic_time: native}`;
      metadata `%{operation: name, version: v, node: node}`.
    * `[:cluster_scope, :operation, :stop]` - it returned a result.
      Measurements `%{duration: native}`; same metadata.
    * `[:cluster_scope, :operation, :exception]` - it ended in an error
      (its error envelope: raised, exited, timed out or returned
      `{:error, _}`). Measurements `%{duration: native}`; metadata adds
      `error_code` (an atom of `ClusterScope.Error.codes/0`) and `kind: :error`.
    * `[:cluster_scope, :alert, :raised | :cleared]` - a health alert
      (`ClusterScope.Health`). Measurements `%{value: number, system_time: native}`;
      metadata is the alert map.
    * `[:cluster_scope, :node, :up | :suspect | :down]` - a cluster event of
      `ClusterScope.Cluster.State`. Measurements `%{system_time: native}`;
      metadata `%{node: node, observer: node(), cause: text, details: map,
      event_id: id}`.

  Durations are in `:native` time units (`System.convert_time_unit/3`).
  Operation events cover the execution of a resolved, available operation
  with valid parameters: a run refused before that (unknown operation,
  missing requirement, invalid parameters) emits nothing; it still counts in
  the latency histograms (`ClusterScope.Metrics.OperationLatency`).

  ## Cost

  Without a running `:telemetry` an event is one `:ets.whereis/1` of
  telemetry's handler table (tens of nanoseconds). The table is what `:telemetry` reads handlers from; it
  exists exactly while its application runs (its owner is the
  application's `telemetry_handler_table` server).
  """

  @backend_key {__MODULE__, :backend}
  @handler_table :telemetry_handler_table

  @doc """
  Emits `event` through `:telemetry.execute/3` when the `:telemetry`
  application is running; a no-op otherwise. Never raises; always returns
  `:ok`.
  """
  @spec execute([atom()], map(), map()) :: :ok
  def execute(event, measurements, metadata) do
    backend = :persistent_term.get(@backend_key, :telemetry)

    if ready?(backend) do
      apply(backend, :execute, [event, measurements, metadata])
    end

    :ok
  catch
    _, _ -> :ok
  end

  @doc "Whether events are emitted (the `:telemetry` application is running)."
  @spec enabled?() :: boolean()
  def enabled?, do: ready?(:persistent_term.get(@backend_key, :telemetry))

  @doc """
  Whether the `:telemetry` application is running on this node: its
  handler table exists (its owner is the application's
  `telemetry_handler_table` server; the `:telemetry` module itself may not
  be loaded yet in interactive mode, and loads on the first call).
  Handlers can be attached and events emitted only then. One BIF call, no
  message.
  """
  @spec running?() :: boolean()
  def running?, do: :ets.whereis(@handler_table) != :undefined

  defp ready?(:telemetry), do: running?()
  defp ready?(backend), do: :erlang.module_loaded(backend)

  @doc false
  # Tests only: send events to `module.execute/3` instead of :telemetry's
  # (nil restores :telemetry). Replacing a persistent term makes the VM scan
  # every process once: never call this on a production node.
  def put_backend(nil) do
    :persistent_term.erase(@backend_key)
    :ok
  end

  def put_backend(module) when is_atom(module), do: :persistent_term.put(@backend_key, module)

  @doc false
  # Wraps the execution of an operation in the runner (start, then stop or
  # exception); returns what `fun` returns.
  def span_operation(meta, fun) do
    if enabled?() do
      metadata = %{operation: meta.name, version: meta.version, node: node()}
      start = System.monotonic_time()

      execute(
        [:cluster_scope, :operation, :start],
        %{system_time: System.system_time(), monotonic_time: start},
        metadata
      )

      result = fun.()
      duration = System.monotonic_time() - start

      case result do
        {:error, _meta, %{code: code}} ->
          execute(
            [:cluster_scope, :operation, :exception],
            %{duration: duration},
            Map.merge(metadata, %{error_code: code, kind: :error})
          )

        _ ->
          execute([:cluster_scope, :operation, :stop], %{duration: duration}, metadata)
      end

      result
    else
      fun.()
    end
  end

  @doc false
  # Called by ClusterScope.Cluster.State for every event it emits.
  def cluster_event(%{type: type} = event) when type in [:up, :suspect, :down] do
    execute(
      [:cluster_scope, :node, type],
      %{system_time: System.system_time()},
      %{
        node: event.node,
        observer: node(),
        cause: event.cause,
        details: event.details,
        event_id: event.id
      }
    )
  end

  def cluster_event(_event), do: :ok

  @doc false
  # Called by the health monitor when an alert is raised or cleared.
  def alert(action, alert) when action in [:raised, :cleared] do
    execute(
      [:cluster_scope, :alert, action],
      %{value: alert.value, system_time: System.system_time()},
      alert
    )
  end
end
