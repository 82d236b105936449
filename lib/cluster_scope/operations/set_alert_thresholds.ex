defmodule ClusterScope.Operations.SetAlertThresholds do
  @moduledoc """
  `PUT /api/v1/cluster/alerts/thresholds`: changes the health alert
  thresholds on every node running a ClusterScope agent, or on `node` only,
  and returns the thresholds in force on each. Mutating: needs the token
  over HTTP.

  The body:

      {"thresholds": {"process_usage_pct": {"warning": 70, "critical": 85},
                      "max_message_queue_len": {"critical": null},
                      "hysteresis": 0.2, "clear_after_samples": 5},
       "node": "app@host"}

  A level left out is kept; `null` disables it. The thresholds are checked
  here first: every bad field is named (`thresholds.process_count.warning`)
  and no node changes. Thresholds are run-time state of each node's monitor:
  a node that restarts is back to the defaults (see
  `ClusterScope.Health.Thresholds`). Nodes that do not answer are in
  `node_errors`.
  """

  # Majority: thresholds set by a minority would differ from the other
  # side's. Idempotent: setting the same thresholds twice is setting them once.
  use ClusterScope.Operation,
    name: "set_alert_thresholds",
    mutating: true,
    partition: :majority,
    idempotent: true

  alias ClusterScope.Health
  alias ClusterScope.Health.Thresholds

  @impl true
  def rest_config do
    %{
      method: :put,
      path: "/api/v1/cluster/alerts/thresholds",
      summary: "Set health alert thresholds on every node (or one)",
      parameters: [
        %{
          name: :thresholds,
          type: :map,
          required: true,
          location: :body,
          description:
            "metric => {warning, critical} (null disables a level), plus hysteresis and " <>
              "clear_after_samples; see ClusterScope.Health.Thresholds"
        },
        %{
          name: :node,
          type: :node,
          required: false,
          location: :body,
          description: "only this node (default: every node with a ClusterScope agent)"
        }
      ],
      responses: %{200 => %{description: "the thresholds in force on each node"}}
    }
  end

  def check_params(%{thresholds: changes} = params) do
    # The checks every node makes, against this node's thresholds in force.
    case Thresholds.apply_changes(Health.thresholds() || Thresholds.defaults(), changes) do
      {:ok, _} ->
        {:ok, %{params | thresholds: normalize(changes)}}

      {:error, errors} ->
        {:error, Enum.map(errors, &%{&1 | field: "thresholds." <> &1.field})}
    end
  end

  @impl true
  def execute(%{thresholds: changes} = params) do
    nodes = if node = Map.get(params, :node), do: [node]
    {answers, node_errors} = Health.cluster_call(:local_set_thresholds, [changes], nodes)

    {:ok,
     %{
       thresholds: Map.new(answers),
       nodes: Enum.map(answers, &elem(&1, 0)),
       node_errors: node_errors
     }}
  end

  # String keys from JSON to the atoms that already exist (validated above),
  # so every node gets the same terms.
  defp normalize(changes) do
    Map.new(changes, fn {k, v} ->
      key = atom_key(k)
      if is_map(v), do: {key, Map.new(v, fn {l, x} -> {atom_key(l), x} end)}, else: {key, v}
    end)
  end

  defp atom_key(k) when is_atom(k), do: k
  defp atom_key(k) when is_binary(k), do: String.to_existing_atom(k)
end
