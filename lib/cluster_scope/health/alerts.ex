defmodule ClusterScope.Health.Alerts do
  @moduledoc """
  Turns samples into alerts, with hysteresis so that they do not flap.

  For each metric with thresholds (`ClusterScope.Health.Thresholds`), at
  most one alert is active at a time:

    * **raise** - a sample whose value is at or above a level raises an
      alert of that severity at once (within one sample). A value reaching
      `critical` while a `warning` is active clears the warning and raises a
      critical alert.
    * **clear** - an active alert clears only after `clear_after_samples`
      (default 3) consecutive samples below `threshold * (1 - hysteresis)`
      (default 10% under its level's threshold in force). A sample at or
      above that line resets the count. When a critical alert clears and the
      value is still at or above `warning`, a warning alert is raised.
    * A level disabled (`nil`) while its alert is active clears that alert at
      the next sample; a metric without a value in a sample (not measured
      yet, or its collector unavailable) leaves its alert as it is.

  An alert is `%{id, severity, node, metric, value, threshold,
  started_at_ms, message, remediation}`; `value` follows the latest sample
  while it is active. A cleared alert carries `cleared_at_ms` as well.
  """

  alias ClusterScope.Health.Thresholds

  @typedoc "An alert."
  @type alert :: %{
          id: String.t(),
          severity: :warning | :critical,
          node: node(),
          metric: atom(),
          value: number(),
          threshold: number(),
          started_at_ms: integer(),
          message: String.t(),
          remediation: [String.t()]
        }

  @typedoc "What is tracked per metric: the active alert and the count of samples under its clear line."
  @type tracks :: %{atom() => %{alert: alert() | nil, below: non_neg_integer()}}

  @doc """
  Evaluates one sample. `ctx` has `:node`, `:now_ms`, `:seq` (the last alert
  number used) and `:sample` (for the messages). Returns
  `{tracks, events, seq}` where `events` are `{:raised | :cleared, alert}` in
  the order they happened.
  """
  @spec evaluate(tracks(), map(), Thresholds.t(), map()) ::
          {tracks(), [{:raised | :cleared, alert()}], non_neg_integer()}
  def evaluate(tracks, values, thresholds, ctx) do
    Enum.reduce(Thresholds.metrics(), {tracks, [], ctx.seq}, fn metric, {tracks, events, seq} ->
      track = Map.get(tracks, metric, %{alert: nil, below: 0})
      levels = thresholds.metrics[metric]
      value = Map.get(values, metric)

      {track, new_events, seq} = step(metric, value, levels, thresholds, track, %{ctx | seq: seq})

      {Map.put(tracks, metric, track), events ++ new_events, seq}
    end)
  end

  @doc "The active alerts in `tracks`, critical first, then oldest first."
  @spec active(tracks()) :: [alert()]
  def active(tracks) do
    tracks
    |> Map.values()
    |> Enum.map(& &1.alert)
    |> Enum.reject(&is_nil/1)
    |> sort()
  end

  @doc "Sorts alerts: critical first, then by start time."
  @spec sort([alert()]) :: [alert()]
  def sort(alerts) do
    Enum.sort_by(alerts, &{if(&1.severity == :critical, do: 0, else: 1), &1.started_at_ms, &1.id})
  end

  @doc "The worst severity among `alerts` (`nil` when there is none)."
  @spec worst([alert()]) :: :warning | :critical | nil
  def worst(alerts) do
    cond do
      Enum.any?(alerts, &(&1.severity == :critical)) -> :critical
      alerts != [] -> :warning
      true -> nil
    end
  end

  # -- one metric ----------------------------------------------------------------

  defp step(metric, value, levels, thresholds, %{alert: active} = track, ctx) do
    level = level(value, levels)

    cond do
      # The active alert's level was disabled: clear it, maybe raise another.
      active != nil and levels[active.severity] == nil ->
        {track, cleared} = clear(track, ctx)
        {track, raised, seq} = maybe_raise(metric, value, level, levels, track, ctx)
        {track, cleared ++ raised, seq}

      is_nil(value) ->
        {track, [], ctx.seq}

      active == nil and level != nil ->
        maybe_raise(metric, value, level, levels, track, ctx)

      active == nil ->
        {track, [], ctx.seq}

      # Escalation: warning -> critical.
      level == :critical and active.severity == :warning ->
        {track, cleared} = clear(track, ctx)
        {track, raised, seq} = maybe_raise(metric, value, level, levels, track, ctx)
        {track, cleared ++ raised, seq}

      # The clear line follows the threshold in force (it may have been
      # changed since the alert was raised).
      value < levels[active.severity] * (1 - thresholds.hysteresis) ->
        below = track.below + 1
        active = %{active | value: value, threshold: levels[active.severity]}

        if below >= thresholds.clear_after_samples do
          {track, cleared} = clear(%{track | alert: active}, ctx)
          # Coming down from critical while still at or above warning.
          {track, raised, seq} = maybe_raise(metric, value, level, levels, track, ctx)
          {track, cleared ++ raised, seq}
        else
          {%{track | below: below, alert: active}, [], ctx.seq}
        end

      true ->
        active = %{active | value: value, threshold: levels[active.severity]}
        {%{track | below: 0, alert: active}, [], ctx.seq}
    end
  end

  defp level(nil, _levels), do: nil

  defp level(value, levels) do
    cond do
      is_number(levels.critical) and value >= levels.critical -> :critical
      is_number(levels.warning) and value >= levels.warning -> :warning
      true -> nil
    end
  end

  defp clear(%{alert: alert} = track, ctx) do
    {%{track | alert: nil, below: 0}, [{:cleared, Map.put(alert, :cleared_at_ms, ctx.now_ms)}]}
  end

  defp maybe_raise(_metric, _value, nil, _levels, track, ctx), do: {track, [], ctx.seq}

  defp maybe_raise(metric, value, severity, levels, track, ctx) do
    seq = ctx.seq + 1
    threshold = levels[severity]
    {message, remediation} = describe(metric, severity, value, threshold, ctx.sample)

    alert = %{
      id: "#{ctx.node}/#{metric}/#{seq}",
      severity: severity,
      node: ctx.node,
      metric: metric,
      value: value,
      threshold: threshold,
      started_at_ms: ctx.now_ms,
      message: message,
      remediation: remediation
    }

    {%{track | alert: alert, below: 0}, [{:raised, alert}], seq}
  end

  # -- messages ------------------------------------------------------------------

  @doc """
  An alert for a value measured once rather than sampled (a comparison of
  nodes made by one call): raised when `value` reaches a level of
  `levels`, `nil` otherwise. No hysteresis: the next call measures again.
  """
  @spec instant(atom(), number() | nil, Thresholds.levels(), node(), integer()) :: alert() | nil
  def instant(metric, value, levels, node, now_ms) do
    case level(value, levels) do
      nil ->
        nil

      severity ->
        threshold = levels[severity]
        {message, remediation} = describe(metric, severity, value, threshold, %{})

        %{
          id: "#{node}/#{metric}/instant",
          severity: severity,
          node: node,
          metric: metric,
          value: value,
          threshold: threshold,
          started_at_ms: now_ms,
          message: message,
          remediation: remediation
        }
    end
  end

  @doc false
  def describe(metric, severity, value, threshold, sample) do
    {what, remediation} = text(metric, value, threshold, sample || %{})
    {"#{severity}: #{what}", remediation}
  end

  defp text(:memory_total_pct, value, threshold, sample) do
    system = get_in(sample, [:memory, :system_bytes])

    {"the VM uses #{value}% of the memory available to it (#{bytes(system)}; threshold #{threshold}%)",
     memory_remediation()}
  end

  defp text(:memory_total_bytes, value, threshold, _sample) do
    {"the VM uses #{bytes(value)} of memory (threshold #{bytes(threshold)})",
     memory_remediation()}
  end

  defp text(:process_usage_pct, value, threshold, sample) do
    limits = Map.get(sample, :limits, %{})

    {"#{limits[:process_count]} processes are #{value}% of the limit #{limits[:process_limit]} " <>
       "(threshold #{threshold}%); at the limit, spawn fails", process_remediation()}
  end

  defp text(:process_count, value, threshold, _sample) do
    {"#{value} processes (threshold #{threshold})", process_remediation()}
  end

  defp text(:atom_usage_pct, value, threshold, sample) do
    limits = Map.get(sample, :limits, %{})

    {"#{limits[:atom_count]} atoms are #{value}% of the limit #{limits[:atom_limit]} " <>
       "(threshold #{threshold}%); atoms are never freed and the VM stops at the limit",
     [
       "Find code that makes atoms from input: String.to_atom/1, List.to_atom/1, " <>
         ":erlang.binary_to_term/1 without :safe, dynamic module or node names.",
       "Use String.to_existing_atom/1 or keep the values as strings.",
       "Only a restart frees atoms: plan one before the limit; raise it with `+t` if the " <>
         "growth is legitimate."
     ]}
  end

  defp text(:port_usage_pct, value, threshold, sample) do
    limits = Map.get(sample, :limits, %{})

    {"#{limits[:port_count]} ports are #{value}% of the limit #{limits[:port_limit]} " <>
       "(threshold #{threshold}%); at the limit, opening sockets and files fails",
     [
       "List ports with Port.list/0 and Port.info/1: look for sockets or files that are " <>
         "opened and never closed (a connection pool without a bound, leaked file handles).",
       "Raise the limit with `+Q` (and the OS file descriptor limit) if the load is legitimate."
     ]}
  end

  defp text(:run_queue_per_scheduler, value, threshold, sample) do
    sched = Map.get(sample, :schedulers, %{})

    {"#{sched[:run_queue]} processes and ports wait for a scheduler " <>
       "(#{value} per online scheduler; threshold #{threshold}): work is delayed",
     [
       "Find the busiest processes by reductions (e.g. :recon.proc_window(:reductions, 10, 1000) " <>
         "or observer) and what feeds them.",
       "Shed or rate-limit load; move long CPU work off the request path.",
       "Check that the VM sees the cores it should (schedulers online vs. the CPU quota)."
     ]}
  end

  defp text(:scheduler_utilization_pct, value, threshold, _sample) do
    {"the normal schedulers were busy #{value}% of the time over the last sample " <>
       "(threshold #{threshold}%): little headroom is left",
     [
       "Find the busiest processes by reductions and what feeds them.",
       "Shed or rate-limit load, or add capacity (cores, nodes).",
       "If CPU-heavy NIFs run on normal schedulers, move them to dirty schedulers."
     ]}
  end

  defp text(:max_message_queue_len, value, threshold, sample) do
    who =
      case get_in(sample, [:message_queues, :top]) do
        [%{pid: pid} = top | _] ->
          name = if top[:name], do: " (#{top.name})", else: ""
          fun = if top[:current_function], do: ", in #{top.current_function}", else: ""
          "process #{pid}#{name}#{fun} has"

        _ ->
          "a process has"
      end

    {"#{who} #{value} messages queued (threshold #{threshold}): it cannot keep up",
     [
       "Inspect that process (GET its info, or Process.info(pid, [:current_stacktrace, " <>
         ":message_queue_len])): is it blocked on a call, or slower than its senders?",
       "Add back-pressure (GenServer.call instead of cast, bounded buffers) or spread the " <>
         "work over several processes.",
       "A selective receive on a long queue is quadratic: check its receive patterns."
     ]}
  end

  defp text(:busy_dist_port_events, value, threshold, _sample) do
    {"#{value} times in the last sample a process was suspended because a distribution " <>
       "buffer to another node was full (threshold #{threshold})",
     [
       "Look for large or frequent messages between nodes (big terms, chatty broadcasts).",
       "Raise the distribution buffer busy limit (`+zdbbl`, default 1024 KiB).",
       "Check the network between the nodes (bandwidth, loss): see GET /api/v1/cluster/partitions."
     ]}
  end

  defp text(:connectivity, value, threshold, sample) do
    c = Map.get(sample, :connectivity, %{})

    what =
      if value >= 2,
        do: "the cluster is split and this node is on the #{c[:side]} side",
        else: "the cluster's connectivity is #{c[:status]}"

    {"#{what} (level #{value}, threshold #{threshold})",
     [
       "See GET /api/v1/cluster/partitions and /api/v1/cluster/topology for who cannot reach whom.",
       "Check the network between the nodes (firewall, routes, DNS, epmd) and frozen or " <>
         "overloaded nodes.",
       "On a minority side, avoid acting on cluster-wide state (singletons, Horde, global " <>
         "names) until the split heals."
     ]}
  end

  defp text(:horde_skew, value, threshold, sample) do
    worst =
      sample
      |> get_in([:horde, :supervisors])
      |> List.wrap()
      |> Enum.filter(&is_number(&1[:skew]))
      |> Enum.max_by(& &1.skew, fn -> nil end)

    who = if worst, do: "Horde supervisor #{inspect(worst.name)}", else: "a Horde supervisor"

    {"#{who} spreads its children unevenly over its live members: skew #{value} " <>
       "(most loaded / mean; threshold #{threshold})",
     [
       "See GET /api/v1/horde/supervisors for children per node and member statuses.",
       "Horde places children by its distribution strategy when they start and does not move " <>
         "them back after a node returns unless process_redistribution is :active.",
       "Members with status uninitialized (nodes without this supervisor) are not counted."
     ]}
  end

  defp text(:horde_duplicates, value, threshold, _sample) do
    {"#{value} Horde children run twice (threshold #{threshold}): more running than recorded, " <>
       "the same child spec on two nodes, or unnamed copies of named children",
     [
       "See GET /api/v1/horde/supervisors (duplicates) and /api/v1/horde/registries.",
       "A healed partition leaves both sides' copies running: stop the extra ones " <>
         "(Horde.DynamicSupervisor.terminate_child/2) or restart the affected supervisor.",
       "Use Horde.UniformQuorumDistribution so a minority side stops its children during a split."
     ]}
  end

  defp text(:horde_lost_children, value, threshold, _sample) do
    {"#{value} Horde children are recorded on nodes that are not up (threshold #{threshold}): " <>
       "they were not restarted elsewhere",
     [
       "See GET /api/v1/horde/supervisors and /api/v1/horde/members.",
       "With members: :auto, Horde forgets a member that leaves before it sees it dead, and " <>
         "does not restart its children: start them again (POST /api/v1/horde/supervisors/:supervisor/children)."
     ]}
  end

  defp text(:horde_members_not_connected, value, threshold, _sample) do
    {"#{value} nodes are Horde members but not connected or not up here (threshold #{threshold})",
     [
       "See GET /api/v1/horde/members: membership compared with the connected nodes and " <>
         "ClusterScope's view of the partition.",
       "Explicit member lists (Horde.Cluster.set_members/2) are not updated when a node goes: " <>
         "update them, or use members: :auto.",
       "A quorum strategy counts such members: see whether it still has a majority."
     ]}
  end

  defp text(:horde_membership_disagreements, value, threshold, _sample) do
    {"#{value} nodes see other Horde members than the rest of the cluster (threshold #{threshold})",
     [
       "See GET /api/v1/cluster/health (horde.membership_disagreements) and " <>
         "GET /api/v1/horde/members: which node lists which members.",
       "A node that disagrees after a netsplit heals keeps its own children and names: " <>
         "expect duplicates until membership converges (Horde.Cluster.set_members/2 or members: :auto).",
       "If it does not converge within a few seconds, check the links between those nodes " <>
         "(GET /api/v1/cluster/partitions)."
     ]}
  end

  defp text(:code_drift_modules, value, threshold, _sample) do
    {"#{value} modules have been loaded at different versions on different nodes for longer " <>
       "than code_drift_alert_after_ms (threshold #{threshold})",
     [
       "See GET /api/v1/cluster/code_drift?kind=different_versions: which nodes run which MD5.",
       "A rolling deploy that did not finish, or a hot patch loaded on some nodes only: " <>
         "load the intended version everywhere (or roll back) and the alert clears."
     ]}
  end

  defp text(:machine_memory_pct, value, threshold, sample) do
    {"the machine has #{value}% of its memory in use, all processes together " <>
       "(threshold #{threshold}%; the VM's own share is memory_total_pct)",
     [
       "See GET /api/v1/cluster/nodes/:node/os (memory, swap, cgroup) for the machine's view.",
       "Compare with the VM's memory (#{bytes(get_in(sample, [:memory, :total_bytes]))}): " <>
         "if the VM is small, another program on the machine takes the memory."
     ]}
  end

  defp text(:disk_usage_pct, value, threshold, sample) do
    mount = get_in(sample, [:os, :fullest_disk_mount])

    {"the fullest file system#{if mount, do: " (#{mount})"} is #{value}% full " <>
       "(threshold #{threshold}%)",
     [
       "See GET /api/v1/cluster/nodes/:node/os (disks) for every mounted file system.",
       "Look for growing logs, crash dumps (erl_crash.dump), Mnesia or DETS files and temporary files."
     ]}
  end

  defp text(metric, value, threshold, _sample) do
    {"#{metric} is #{value} (threshold #{threshold})", []}
  end

  defp memory_remediation do
    [
      "Break the memory down (GET this node's resources: processes, binary, ets, atom) to " <>
        "see what grows.",
      "Look for the largest processes and ETS tables (:ets.i/0, observer) and for " <>
        "long-lived processes holding large binaries (a garbage collection frees them).",
      "Look for unbounded caches, mailboxes and ETS tables; bound them."
    ]
  end

  defp process_remediation do
    [
      "Find what spawns without bound: group the processes by initial call or supervisor " <>
        "(observer, :recon.proc_count/2).",
      "Look for processes that never exit (leaked tasks, per-request processes that wait forever).",
      "Raise the limit with `+P` if the load is legitimate."
    ]
  end

  defp bytes(nil), do: "unknown"
  defp bytes(n) when n >= 1_073_741_824, do: "#{Float.round(n / 1_073_741_824, 2)} GiB"
  defp bytes(n) when n >= 1_048_576, do: "#{Float.round(n / 1_048_576, 1)} MiB"
  defp bytes(n), do: "#{n} bytes"
end
