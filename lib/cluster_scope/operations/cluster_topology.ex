defmodule ClusterScope.Operations.ClusterTopology do
  @moduledoc """
  `GET /api/v1/cluster/topology`: every node this node knows, with its status
  (up, suspected, unreachable, frozen, down), metadata and down cause; the
  connection matrix (what each node hears of the others); the classification
  of that matrix; and the nodes running a ClusterScope agent.

  Cheap and local: it reads `ClusterScope.Cluster.State`, so it answers on
  both sides of a split without calling any other node.
  """

  use ClusterScope.Operation, name: "cluster_topology"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/topology",
      summary: "Nodes, statuses, connection matrix and partition classification",
      parameters: [],
      responses: %{200 => %{description: "the topology as seen from this node"}}
    }
  end

  @impl true
  def execute(_params), do: {:ok, ClusterScope.Cluster.State.topology()}
end
