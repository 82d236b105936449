defmodule ClusterScope.Operations.ClusterTopology do
  @moduledoc """
  `GET /api/v1/cluster/topology`: every node this node knows, with its status
  (up, suspected, unreachable, frozen, down, departed), metadata and down cause; the
  connection matrix (what each node hears of the others); the classification
  of that matrix; and the nodes running a ClusterScope agent.

  Cheap and local: it reads `ClusterScope.Cluster.State`, so it answers on
  both sides of a split without calling any other node. With
  `include_health=true` it also asks every reachable node for its health
  summary and active alerts (one parallel call per node, bounded by the node
  timeout; nodes already seen as not up are not called and are listed in
  `node_errors`).

  `libcluster` is this node's libcluster view
  (`ClusterScope.Cluster.Libcluster.view/0`): `available: false` with a
  reason when libcluster is not loaded; otherwise whether its telemetry is
  heard (`telemetry`) and, per topology (from `config :libcluster,
  topologies:` and the running `Cluster.Supervisor`s), its strategy, the
  nodes it expects where the strategy makes that knowable (Epmd hosts,
  LocalEpmd's names), the ones connected, the expected ones `missing`, and
  the ones `failing` with their last error from libcluster's telemetry.
  Local too: a scan of the registered names and two calls to each
  `Cluster.Supervisor` (500 ms timeout each).
  """

  use ClusterScope.Operation, name: "cluster_topology"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/topology",
      summary: "Nodes, statuses, connection matrix and partition classification",
      parameters: [
        %{
          name: :include_health,
          type: :boolean,
          required: false,
          default: false,
          location: :query,
          description: "add each node's health summary and active alerts (one call per node)"
        }
      ],
      responses: %{200 => %{description: "the topology as seen from this node"}}
    }
  end

  @impl true
  def execute(params) do
    topology =
      ClusterScope.Cluster.State.topology()
      |> Map.put(:libcluster, ClusterScope.Cluster.Libcluster.view())
      |> Map.put(:protocol, protocol())

    if params[:include_health] do
      {answers, node_errors} = ClusterScope.Health.cluster_call(:local_health, [])
      {:ok, Map.merge(topology, %{health: Map.new(answers), node_errors: node_errors})}
    else
      {:ok, topology}
    end
  end

  defp protocol do
    peers = ClusterScope.Protocol.peers()
    connected = Node.list()

    %{
      version: ClusterScope.Protocol.version(),
      min_compatible: ClusterScope.Protocol.min_compatible(),
      peers: peers,
      mismatched: for(%{compatible: false, node: n} = p <- peers, n in connected, do: p)
    }
  end
end
