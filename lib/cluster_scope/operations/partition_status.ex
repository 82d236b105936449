defmodule ClusterScope.Operations.PartitionStatus do
  @moduledoc """
  `GET /api/v1/cluster/partitions`: the classification of the cluster's
  connectivity as seen from this node (healthy, node down, frozen, split with
  this node's side, one-way, indirect), with the components, the pairs that
  cannot reach each other, and the phi of every peer's heartbeats.

  Local and cheap: answers on both sides of a split.
  """

  use ClusterScope.Operation, name: "partition_status"

  alias ClusterScope.Cluster.{Heartbeat, State}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/partitions",
      summary: "Partition classification, components and heartbeat phi per peer",
      parameters: [],
      responses: %{200 => %{description: "the partition status"}}
    }
  end

  @impl true
  def execute(_params) do
    topology = State.topology()
    snapshot = Heartbeat.snapshot()

    phis =
      for {node, p} <- snapshot.phis, into: %{} do
        {node,
         %{
           phi: Float.round(p.phi * 1.0, 3),
           silent_ms: round(snapshot.now_ms - p.last_heartbeat_ms),
           mean_interval_ms: Float.round(p.mean_ms * 1.0, 1),
           std_dev_ms: Float.round(p.std_dev_ms * 1.0, 1)
         }}
      end

    {:ok,
     %{
       classification: topology.classification,
       matrix: topology.matrix,
       heartbeat: %{
         interval_ms: snapshot.interval_ms,
         phi_threshold: snapshot.threshold,
         peers: phis
       }
     }}
  end
end
