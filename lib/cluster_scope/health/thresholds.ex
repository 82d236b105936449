defmodule ClusterScope.Health.Thresholds do
  @moduledoc """
  Alert thresholds of the health monitor: their defaults, and validation of
  changes made at run time (`ClusterScope.Health.set_alert_thresholds/1`).

  Every metric has a `warning` and a `critical` level; `nil` disables a
  level. A value at or above a level raises an alert of that severity (see
  `ClusterScope.Health.Alerts` for hysteresis).

  | metric                      | unit                                        | warning  | critical |
  | --------------------------- | ------------------------------------------- | -------- | -------- |
  | `memory_total_pct`          | BEAM memory, % of the system's (or cgroup's) memory | 80 | 90   |
  | `memory_total_bytes`        | BEAM memory, bytes                          | nil      | nil      |
  | `process_usage_pct`         | process count, % of the process limit       | 80       | 90       |
  | `process_count`             | processes                                   | nil      | nil      |
  | `atom_usage_pct`            | atom count, % of the atom limit             | 80       | 90       |
  | `port_usage_pct`            | port count, % of the port limit             | 80       | 90       |
  | `run_queue_per_scheduler`   | processes and ports ready to run / online schedulers | 4 | 16     |
  | `scheduler_utilization_pct` | busy time of the normal schedulers, %       | 90       | nil      |
  | `max_message_queue_len`     | longest message queue seen                  | 10_000   | 100_000  |
  | `busy_dist_port_events`     | processes suspended on a busy distribution port, per sample | 1 | nil |
  | `connectivity`              | 0 healthy, 1 any other classification, 2 split on the minority (or tie) side | 1 | 2 |
  | `horde_skew`                | children of the most loaded live Horde member / mean over live members (largest over supervisors) | 2.0 | nil |
  | `horde_duplicates`          | Horde children running twice (extra, same spec on two nodes, unnamed copies) | 1 | nil |
  | `horde_lost_children`       | Horde children recorded on nodes that are not up                    | 1        | nil      |
  | `horde_members_not_connected` | Horde members on nodes not connected or not up (distinct nodes)   | 1        | nil      |
  | `horde_membership_disagreements` | nodes whose Horde member lists differ from the most common one (cluster-wide) | 1 | nil |
  | `code_drift_modules`        | modules loaded at different versions on different nodes for `code_drift_alert_after_ms` or longer (measured by one node, `ClusterScope.NodeViews.CodeDrift.Watch`; 0 elsewhere) | 1 | nil |
  | `machine_memory_pct`        | the machine's memory in use by everything (`MemTotal - MemAvailable`), % | 90 | 95 |
  | `disk_usage_pct`            | the fullest mounted local file system, % used | 85       | 95       |

  The machine metrics come from `ClusterScope.NodeViews.Os` (`/proc`, `df`,
  or `os_mon` when the host runs it), read by the monitor's non-essential
  collector (at most every 10 s; `nil`, so no alert, until the first read
  and where they cannot be read).

  The Horde metrics exist only where Horde is loaded (see
  `ClusterScope.Horde.Findings` for what each counts); they come from the
  monitor's non-essential collector, at most every 10 s.
  `horde_membership_disagreements` needs every node's view: it is
  evaluated by `cluster_health` on the node that answers, against that
  node's thresholds, at each call (no hysteresis: it is a comparison, not a
  sampled value).

  Two settings apply to every metric:

    * `hysteresis` (default `0.1`) - an alert clears only once the value is
      below `threshold * (1 - hysteresis)`...
    * `clear_after_samples` (default `3`) - ...for this many consecutive
      samples.

  Thresholds live in the monitor of each node (run-time state, back to the
  defaults when the monitor restarts).
  """

  @metrics [
    memory_total_pct: {80, 90},
    memory_total_bytes: {nil, nil},
    process_usage_pct: {80, 90},
    process_count: {nil, nil},
    atom_usage_pct: {80, 90},
    port_usage_pct: {80, 90},
    run_queue_per_scheduler: {4, 16},
    scheduler_utilization_pct: {90, nil},
    max_message_queue_len: {10_000, 100_000},
    busy_dist_port_events: {1, nil},
    connectivity: {1, 2},
    horde_skew: {2.0, nil},
    horde_duplicates: {1, nil},
    horde_lost_children: {1, nil},
    horde_members_not_connected: {1, nil},
    horde_membership_disagreements: {1, nil},
    code_drift_modules: {1, nil},
    machine_memory_pct: {90, 95},
    disk_usage_pct: {85, 95}
  ]

  @metric_names Keyword.keys(@metrics)

  @typedoc "The levels of one metric."
  @type levels :: %{warning: number() | nil, critical: number() | nil}

  @typedoc "Thresholds in force."
  @type t :: %{
          metrics: %{atom() => levels()},
          hysteresis: float(),
          clear_after_samples: pos_integer()
        }

  @doc "The metrics that can have thresholds."
  @spec metrics() :: [atom()]
  def metrics, do: @metric_names

  @doc "The default thresholds."
  @spec defaults() :: t()
  def defaults do
    %{
      metrics: Map.new(@metrics, fn {m, {w, c}} -> {m, %{warning: w, critical: c}} end),
      hysteresis: 0.1,
      clear_after_samples: 3
    }
  end

  @doc """
  Applies `changes` to `current`.

  `changes` is a map (atom or string keys) of metric names to
  `%{warning: number | nil, critical: number | nil}` (a level left out keeps
  its value, `nil` disables it), plus optionally `hysteresis` (`0 <= h < 1`)
  and `clear_after_samples` (`1..1000`). Returns `{:ok, thresholds}` or
  `{:error, [%{field: "process_count.warning", message: "..."}]}` naming
  every bad field. No atom is created from the input.
  """
  @spec apply_changes(t(), map()) :: {:ok, t()} | {:error, [map()]}
  def apply_changes(current, changes) when is_map(changes) do
    {new, errors} =
      Enum.reduce(changes, {current, []}, fn {key, value}, {acc, errors} ->
        case change(key_text(key), value, acc) do
          {:ok, acc} -> {acc, errors}
          {:error, errs} -> {acc, errors ++ errs}
        end
      end)

    errors = errors ++ order_errors(new, changes)

    case errors do
      [] -> {:ok, new}
      _ -> {:error, errors}
    end
  end

  def apply_changes(_current, changes),
    do: {:error, [%{field: "thresholds", message: "must be a map, got: #{short(changes)}"}]}

  defp change("hysteresis", value, acc) do
    if is_number(value) and value >= 0 and value < 1,
      do: {:ok, %{acc | hysteresis: value * 1.0}},
      else: {:error, [field_error("hysteresis", "must be a number >= 0 and < 1", value)]}
  end

  defp change("clear_after_samples", value, acc) do
    if is_integer(value) and value in 1..1_000,
      do: {:ok, %{acc | clear_after_samples: value}},
      else: {:error, [field_error("clear_after_samples", "must be an integer in 1..1000", value)]}
  end

  defp change(name, value, acc) do
    case Enum.find(@metric_names, &(Atom.to_string(&1) == name)) do
      nil ->
        {:error,
         [
           %{
             field: String.slice(name, 0, 100),
             message:
               "is not a metric with thresholds (known: #{Enum.join(@metric_names, ", ")}, " <>
                 "hysteresis, clear_after_samples)"
           }
         ]}

      metric when is_map(value) ->
        levels(metric, value, acc)

      metric ->
        {:error,
         [
           field_error(
             Atom.to_string(metric),
             "must be an object with warning and/or critical",
             value
           )
         ]}
    end
  end

  defp levels(metric, value, acc) do
    {levels, errors} =
      Enum.reduce(value, {acc.metrics[metric], []}, fn {k, v}, {levels, errors} ->
        field = "#{metric}.#{key_text(k)}"

        case key_text(k) do
          level when level in ["warning", "critical"] ->
            case check_level(metric, v) do
              :ok -> {Map.put(levels, String.to_existing_atom(level), v), errors}
              {:error, message} -> {levels, [field_error(field, message, v) | errors]}
            end

          _ ->
            {levels,
             [
               %{
                 field: String.slice(field, 0, 120),
                 message: "is not a level (warning, critical)"
               }
               | errors
             ]}
        end
      end)

    case errors do
      [] -> {:ok, put_in(acc.metrics[metric], levels)}
      _ -> {:error, Enum.reverse(errors)}
    end
  end

  defp check_level(_metric, nil), do: :ok
  defp check_level(:connectivity, v) when v in [1, 2], do: :ok

  defp check_level(:connectivity, _),
    do: {:error, "must be 1 (any unhealthy classification), 2 (minority side) or null"}

  defp check_level(_metric, v) when is_number(v) and v >= 0, do: :ok
  defp check_level(_metric, _), do: {:error, "must be a number >= 0 or null"}

  # warning above critical would make the critical level unreachable from a
  # warning: refuse it, naming the metric.
  defp order_errors(new, changes) do
    changed = for {k, _} <- changes, into: MapSet.new(), do: key_text(k)

    for {metric, %{warning: w, critical: c}} <- new.metrics,
        MapSet.member?(changed, Atom.to_string(metric)),
        is_number(w) and is_number(c) and w > c do
      %{
        field: Atom.to_string(metric),
        message: "warning (#{w}) must not be above critical (#{c})"
      }
    end
  end

  defp field_error(field, message, value),
    do: %{field: field, message: "#{message}, got: #{short(value)}"}

  defp key_text(k) when is_atom(k), do: Atom.to_string(k)
  defp key_text(k) when is_binary(k), do: k
  defp key_text(k), do: inspect(k, limit: 5)

  defp short(v), do: inspect(v, limit: 5, printable_limit: 60)
end
