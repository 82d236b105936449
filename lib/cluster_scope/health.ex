defmodule ClusterScope.Health do
  @moduledoc """
  Health monitoring of every node: samples, thresholds and alerts,
  baselines, and a monitor that protects the node from its own cost.

  Every node runs a `ClusterScope.Health.Monitor` that samples memory,
  process/port/atom usage, run queues, scheduler utilisation, reductions,
  the longest message queues, busy distribution ports, connectivity and (with
  Horde) distribution skew every `health_interval_ms` (default 1 s). See the
  monitor for what each sample costs and how it backs off under load.

      ClusterScope.Health.latest()           # the latest sample of this node
      ClusterScope.Health.alerts()           # its active alerts
      ClusterScope.Health.status()           # sampling interval, throttling, own cost
      ClusterScope.Health.subscribe_to_alerts()
      # receive {:cluster_scope, :alert, :raised | :cleared, alert}
      ClusterScope.Health.set_alert_thresholds(%{process_usage_pct: %{warning: 70}})

  Alerts are `%{id, severity, node, metric, value, threshold, started_at_ms,
  message, remediation}`; thresholds and their defaults are in
  `ClusterScope.Health.Thresholds`, hysteresis in
  `ClusterScope.Health.Alerts`, baselines in `ClusterScope.Health.Baseline`.

  Cluster-wide views are operations: `GET /api/v1/cluster/alerts`, `PUT
  /api/v1/cluster/alerts/thresholds`, `GET /api/v1/cluster/nodes/:node/resources`
  and `GET /api/v1/cluster/health`; `mix cluster_scope.health` is the
  command-line probe.
  """

  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Health.{Monitor, Thresholds}

  @doc "The latest sample of this node (`nil` before the first one)."
  @spec latest() :: map() | nil
  defdelegate latest, to: Monitor

  @doc "The samples this node keeps (the last 120), oldest first."
  @spec samples() :: [map()]
  defdelegate samples, to: Monitor

  @doc "The active alerts of this node, critical first."
  @spec alerts() :: [map()]
  defdelegate alerts, to: Monitor

  @doc """
  The sampling and throttling state: `interval_ms` in force and
  `base_interval_ms`, `throttled`, `reason` (`:run_queue`,
  `:scheduler_utilization`, `:own_cost` or nil), `skipped_collectors`, and
  `own_cost` (the last and typical sample time in microseconds, the last
  sample's reductions, the fraction of one core they and the collectors
  take at the current interval, and the budget).
  """
  @spec status() :: map() | nil
  defdelegate status, to: Monitor

  @doc "The thresholds in force on this node."
  @spec thresholds() :: Thresholds.t() | nil
  defdelegate thresholds, to: Monitor

  @doc "The default thresholds (see `ClusterScope.Health.Thresholds`)."
  @spec default_thresholds() :: Thresholds.t()
  defdelegate default_thresholds, to: Thresholds, as: :defaults

  @doc """
  Changes thresholds on this node, from the next sample on. `changes` maps
  metric names to `%{warning: number | nil, critical: number | nil}` (a level
  left out is kept, `nil` disables it), and may set `hysteresis` and
  `clear_after_samples`:

      ClusterScope.Health.set_alert_thresholds(%{
        process_count: %{warning: 50_000, critical: nil},
        hysteresis: 0.2
      })

  Returns `{:ok, thresholds_in_force}` or `{:error, [%{field, message}]}`
  naming every bad field (`"process_count.warning"`); nothing changes then.
  """
  @spec set_alert_thresholds(map()) :: {:ok, Thresholds.t()} | {:error, [map()]}
  def set_alert_thresholds(changes), do: Monitor.set_thresholds(changes)

  @doc "Restores the default thresholds on this node."
  @spec reset_alert_thresholds() :: {:ok, Thresholds.t()}
  defdelegate reset_alert_thresholds, to: Monitor, as: :reset_thresholds

  @doc """
  Subscribes the calling process to this node's alerts: it receives
  `{:cluster_scope, :alert, :raised | :cleared, alert}`. Idempotent; ends
  with the process.
  """
  @spec subscribe_to_alerts() :: :ok
  def subscribe_to_alerts, do: Monitor.subscribe(self())

  @doc "Ends the calling process's alert subscription."
  @spec unsubscribe_from_alerts() :: :ok
  def unsubscribe_from_alerts, do: Monitor.unsubscribe(self())

  @doc """
  Takes a sample now (besides the periodic ones) and returns it. It
  evaluates thresholds like any sample but does not change the throttling.
  """
  @spec sample_now() :: map()
  defdelegate sample_now, to: Monitor

  @doc """
  Changes how this node's monitor samples, at run time:

    * `interval_ms` - the normal interval (default `health_interval_ms`)
    * `max_interval_ms` - the longest it backs off to (default 16 times the
      interval; `nil` for that default)
    * `cost_budget` - the fraction of one core the monitor may use (default
      0.01)
    * `scan_interval_ms` - the shortest time between two message queue scans
      (default 10_000)

  Pass `:defaults` to restore every default. A change of `interval_ms` or
  `max_interval_ms` restarts sampling from `interval_ms`, unthrottled; other
  changes leave the throttling to the next samples. Returns `{:ok, status}`
  or `{:error, [%{field, message}]}`.
  """
  @spec configure_sampling(keyword() | :defaults) :: {:ok, map()} | {:error, [map()]}
  defdelegate configure_sampling(opts), to: Monitor, as: :configure

  @doc "The moving baselines per metric: `%{metric => %{mean, stddev, samples}}`."
  @spec baselines() :: map()
  defdelegate baselines, to: Monitor

  # -- what other nodes ask of this one (through ClusterScope.Fanout) ------------------

  @doc false
  # This node's active alerts, or an error when its monitor is not running.
  def local_alerts do
    if Monitor.running?(), do: {:ok, alerts()}, else: {:error, not_running()}
  end

  @doc false
  # This node's health for `cluster_health`: a summary of its latest sample,
  # its active alerts and its throttling.
  def local_health do
    if Monitor.running?() do
      alerts = alerts()

      {:ok,
       %{
         node: node(),
         status: severity_status(ClusterScope.Health.Alerts.worst(alerts)),
         alerts: alerts,
         summary: summary(latest()),
         throttled: (status() || %{})[:throttled] || false,
         interval_ms: (status() || %{})[:interval_ms],
         horde: ClusterScope.Horde.Findings.health_part(latest())
       }}
    else
      {:error, not_running()}
    end
  end

  @doc false
  # Sets thresholds here; for `set_alert_thresholds` on every node.
  def local_set_thresholds(changes) do
    if Monitor.running?(), do: set_alert_thresholds(changes), else: {:error, not_running()}
  end

  defp not_running, do: "ClusterScope's health monitor is not running on #{node()}"

  defp summary(nil), do: nil

  defp summary(sample) do
    v = sample.values

    Map.merge(
      Map.take(v, [
        :memory_total_bytes,
        :memory_total_pct,
        :process_count,
        :process_usage_pct,
        :run_queue,
        :scheduler_utilization_pct,
        :reductions_per_s,
        :max_message_queue_len,
        :connectivity
      ]),
      %{sampled_at_ms: sample.at_ms}
    )
  end

  @doc false
  def severity_status(nil), do: :healthy
  def severity_status(:warning), do: :degraded
  def severity_status(:critical), do: :critical

  @doc false
  # Calls `ClusterScope.Health.fun(args)` on the nodes running a
  # ClusterScope agent (`Heartbeat.agent_nodes/0`, or `nodes`), in parallel
  # through `ClusterScope.Fanout` with the node timeout. A node this node
  # already sees as not up (suspected, frozen, unreachable, down) is not
  # called - it would only cost the timeout - and is reported in the errors
  # with its status. Returns `{[{node, value}], node_errors}`; a node that
  # answers `{:error, reason}` is an error too.
  def cluster_call(fun, args, nodes \\ nil), do: agent_call(__MODULE__, fun, args, nodes)

  @doc false
  # The same for any node-side `module.fun(args)` that answers `{:ok, value}`
  # or `{:error, reason}` (e.g. `ClusterScope.Logs.recent/1`).
  def agent_call(module, fun, args, nodes \\ nil) do
    # Agents of a mismatched protocol version are not called by Fanout but
    # listed in node_errors (version_mismatch), never silently left out.
    targets =
      Enum.uniq(
        nodes || [node() | Heartbeat.agent_nodes()] ++ ClusterScope.Protocol.mismatched_nodes()
      )

    statuses = ClusterScope.Fanout.node_statuses()

    {call, skip} =
      Enum.split_with(targets, fn n -> n == node() or Map.get(statuses, n, :up) == :up end)

    skipped = for n <- skip, do: ClusterScope.Fanout.not_called(n, statuses[n])

    {answers, errors} = ClusterScope.Fanout.multicall(call, module, fun, args)

    {oks, refused} =
      Enum.reduce(answers, {[], []}, fn
        {n, {:ok, value}}, {oks, errs} ->
          {[{n, value} | oks], errs}

        {n, {:error, reason}}, {oks, errs} ->
          {oks,
           [
             %{
               node: n,
               status: :error,
               reason: error_text(reason),
               remediation: "Check that the :cluster_scope application runs on #{n}."
             }
             | errs
           ]}

        {n, other}, {oks, errs} ->
          {oks,
           [
             %{
               node: n,
               status: :error,
               reason: "unexpected answer: #{inspect(other, limit: 5)}",
               remediation: "Check that #{n} runs the same ClusterScope version."
             }
             | errs
           ]}
      end)

    {Enum.reverse(oks), errors ++ Enum.reverse(refused) ++ skipped}
  end

  defp error_text(reason) when is_binary(reason), do: reason

  defp error_text([%{field: _, message: _} | _] = fields),
    do: "refused: " <> Enum.map_join(fields, "; ", &"#{&1.field} #{&1.message}")

  defp error_text(reason), do: inspect(reason, limit: 10)
end
