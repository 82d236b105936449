defmodule ClusterScope.Health.Baseline do
  @moduledoc """
  A moving baseline per metric: an exponentially weighted mean and variance
  (weight `2 / (60 + 1)`, about the last 60 samples), and the anomalies of a
  sample against it.

  A value is an anomaly when the baseline has seen at least
  30 samples since it was (re)started and the value is more than 4
  standard deviations *and* more than 20% away from the mean (the second
  condition keeps flat metrics, whose deviation is near zero, from calling
  every small step an anomaly). Anomalies are information for a person
  looking at a node, not alerts: thresholds raise alerts.

  When the cluster's membership changes, the monitor resets the baselines of
  the metrics that grow with the number of connected nodes (see
  `cluster_size_dependent/0`), so a node joining or leaving is not an
  anomaly of the others: those baselines start over and need 30 samples
  before they flag anything again.
  """

  @alpha 2 / (60 + 1)
  @warm_up 30

  # Each distribution connection is a port and a few processes, with its
  # buffers (binary memory) and heartbeats (reductions); per-node state lives
  # in ETS and processes (pg, global, Horde, the application's own).
  @cluster_size_dependent [
    :memory_total_bytes,
    :memory_total_pct,
    :memory_processes_bytes,
    :memory_binary_bytes,
    :memory_ets_bytes,
    :process_count,
    :process_usage_pct,
    :port_count,
    :port_usage_pct,
    :reductions_per_s,
    :busy_dist_port_events,
    :non_up_nodes
  ]

  @typedoc "The baselines: metric => `%{mean, var, n}`."
  @type t :: %{atom() => %{mean: float(), var: float(), n: non_neg_integer()}}

  @doc "The metrics whose baseline is reset when the membership changes."
  @spec cluster_size_dependent() :: [atom()]
  def cluster_size_dependent, do: @cluster_size_dependent

  @doc "Samples a baseline needs before it flags anomalies."
  @spec warm_up() :: pos_integer()
  def warm_up, do: @warm_up

  @doc """
  Compares the numeric `values` with the baselines, then folds them in.
  Returns `{baselines, anomalies}`.
  """
  @spec update(t(), map()) :: {t(), [map()]}
  def update(baselines, values) do
    Enum.reduce(values, {baselines, []}, fn
      {metric, value}, {acc, anomalies} when is_number(value) ->
        b = Map.get(acc, metric, %{mean: 0.0, var: 0.0, n: 0})

        anomalies =
          if anomaly?(b, value), do: [anomaly(metric, value, b) | anomalies], else: anomalies

        {Map.put(acc, metric, fold(b, value)), anomalies}

      _, acc ->
        acc
    end)
    |> then(fn {b, anomalies} -> {b, Enum.sort_by(anomalies, & &1.metric)} end)
  end

  @doc "Forgets the baselines of `metrics`."
  @spec reset(t(), [atom()]) :: t()
  def reset(baselines, metrics), do: Map.drop(baselines, metrics)

  @doc "A JSON-ready view: metric => `%{mean, stddev, samples}`."
  @spec describe(t()) :: map()
  def describe(baselines) do
    Map.new(baselines, fn {m, b} ->
      {m,
       %{mean: Float.round(b.mean, 3), stddev: Float.round(:math.sqrt(b.var), 3), samples: b.n}}
    end)
  end

  defp fold(%{n: 0}, value), do: %{mean: value * 1.0, var: 0.0, n: 1}

  defp fold(%{mean: mean, var: var, n: n}, value) do
    diff = value - mean
    incr = @alpha * diff
    %{mean: mean + incr, var: (1 - @alpha) * (var + diff * incr), n: n + 1}
  end

  defp anomaly?(%{n: n}, _value) when n < @warm_up, do: false

  defp anomaly?(%{mean: mean, var: var}, value) do
    dev = abs(value - mean)
    dev > 4 * :math.sqrt(var) and dev > 0.2 * abs(mean)
  end

  defp anomaly(metric, value, b) do
    %{
      metric: metric,
      value: value,
      baseline: Float.round(b.mean, 3),
      stddev: Float.round(:math.sqrt(b.var), 3)
    }
  end
end
