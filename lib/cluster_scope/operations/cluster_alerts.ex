defmodule ClusterScope.Operations.ClusterAlerts do
  @moduledoc """
  `GET /api/v1/cluster/alerts`: the active health alerts of every node that
  runs a ClusterScope agent, critical first, with the worst severity and a
  count per node.

  Fans out to the agent nodes (`ClusterScope.Cluster.Heartbeat.agent_nodes/0`)
  in parallel; each answers from its monitor's table (microseconds). A node
  that does not answer within the node timeout, or that this node already
  sees as not up (not called), is listed in `node_errors` and the answer is
  `partial`. See `ClusterScope.Health.Alerts` for what an alert holds.
  """

  use ClusterScope.Operation, name: "cluster_alerts"

  alias ClusterScope.Health
  alias ClusterScope.Health.Alerts
  alias ClusterScope.Simulator.Data, as: SimData

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/alerts",
      summary: "Active health alerts of every node",
      parameters: [
        %{
          name: :severity,
          type: :enum,
          values: [:warning, :critical],
          required: false,
          location: :query,
          description: "only alerts of this severity"
        }
      ],
      responses: %{200 => %{description: "the alerts, per node and in total"}}
    }
  end

  @impl true
  def execute(params) do
    # Simulated mode: virtual nodes' alerts too (Simulator.Data).
    {answers, node_errors} =
      Health.cluster_call(:local_alerts, []) |> SimData.add_health(:local_alerts)

    alerts =
      answers
      |> Enum.flat_map(fn {_node, alerts} -> List.wrap(alerts) end)
      |> then(fn alerts ->
        case Map.get(params, :severity) do
          nil -> alerts
          severity -> Enum.filter(alerts, &(&1.severity == severity))
        end
      end)
      |> Alerts.sort()

    {:ok,
     SimData.mark(%{
       alerts: alerts,
       count: length(alerts),
       worst_severity: Alerts.worst(alerts),
       by_node:
         Map.new(answers, fn {node, _} -> {node, Enum.count(alerts, &(&1.node == node))} end),
       node_errors: node_errors
     })}
  end
end
