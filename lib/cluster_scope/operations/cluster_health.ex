defmodule ClusterScope.Operations.ClusterHealth do
  @moduledoc """
  `GET /api/v1/cluster/health`: the connectivity health of the cluster from
  this node: `healthy`, `degraded` (a node suspected, frozen or down, a
  one-way or indirect loss) or `critical` (split, and this node is not on the
  majority side), with node counts by status and the classification.

  Local and cheap.
  """

  use ClusterScope.Operation, name: "cluster_health"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/health",
      summary: "Connectivity health of the cluster",
      parameters: [],
      responses: %{200 => %{description: "the health"}}
    }
  end

  @impl true
  def execute(_params) do
    topology = ClusterScope.Cluster.State.topology()
    c = topology.classification
    counts = Enum.frequencies_by(topology.nodes, & &1.status)

    status =
      cond do
        c.status == :split and c[:side] != :majority -> :critical
        c.status != :healthy -> :degraded
        Enum.any?(topology.nodes, &(&1.status != :up)) -> :degraded
        true -> :healthy
      end

    {:ok,
     %{
       status: status,
       connectivity: c,
       nodes_by_status: counts,
       node_count: length(topology.nodes)
     }}
  end
end
