defmodule ClusterScope.Operations.ClusterHealth do
  @moduledoc """
  `GET /api/v1/cluster/health`: the health of the cluster, from this node.

  Two parts:

    * **connectivity** (local, from `ClusterScope.Cluster.State`):
      `connectivity_status` is `healthy`, `degraded` (a node suspected,
      frozen or down, a one-way or indirect loss) or `critical` (split, and
      this node is not on the majority side), with node counts by status
      (`nodes_by_status`, `node_count`) and the classification
      (`connectivity`). A `departed` node (its connection closed longer
      than `departed_grace_ms` ago: stopped, replaced) is counted but is no
      problem.
    * **resources** (fanned out to every node with a ClusterScope agent):
      `per_node` has each node's latest sample summary (memory, processes,
      run queue, scheduler utilisation, longest message queue, ...), its
      active alerts and whether its monitor is throttled; `alerts` lists
      every active alert, critical first, and `worst_alert_severity` the
      worst of them. Nodes that do not answer within the node timeout, or
      that this node already sees as not up (they are not called), are in
      `node_errors`.

    * **libcluster** (local, `ClusterScope.Cluster.Libcluster.health/1`):
      `status` `absent` without libcluster, `degraded` when a topology
      misses a node it expects (Epmd hosts, LocalEpmd's names) or fails to
      connect one (`missing` and `failing`, with libcluster's last error),
      `healthy` otherwise.

    * **horde** (only when a node runs Horde; else `nil`): each node's Horde
      values (`horde_skew` over live members, `horde_duplicates`,
      `horde_lost_children`, `horde_members_not_connected`: thresholds and
      alerts like the other metrics, so they are in `alerts` too), the
      worst of each, and what only a comparison of the nodes shows:
      `membership_disagreements` (nodes whose member lists of a registry
      or supervisor differ), `replica_disagreements` (registry replicas
      with different contents) and `missing_on`. See
      `ClusterScope.Horde.Findings`.

  `status` is the worst of: the connectivity status; `degraded` for a
  warning alert and `critical` for a critical one anywhere; `degraded`
  when a node did not answer; `degraded` when libcluster's status is; and
  `degraded` when nodes disagree about Horde membership or registry
  contents. `mix cluster_scope.health` exits 0, 1 or 2 on
  `healthy`, `degraded` or `critical`.

  Cost: one `topology/0` call here and one remote read of each node's
  monitor table (microseconds each); bounded by the node timeout.
  """

  use ClusterScope.Operation, name: "cluster_health"

  alias ClusterScope.Health
  alias ClusterScope.Health.{Alerts, Thresholds}
  alias ClusterScope.Simulator.Data, as: SimData

  @rank %{healthy: 0, degraded: 1, critical: 2}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/health",
      summary: "Cluster health: connectivity, and resources and alerts of every node",
      parameters: [],
      responses: %{200 => %{description: "the health"}}
    }
  end

  @impl true
  def execute(_params) do
    topology = ClusterScope.Cluster.State.topology()
    c = topology.classification
    counts = Enum.frequencies_by(topology.nodes, & &1.status)

    connectivity_status =
      cond do
        ClusterScope.Cluster.State.split_here?(c) -> :critical
        c.status != :healthy -> :degraded
        Enum.any?(topology.nodes, &(&1.status not in [:up, :departed])) -> :degraded
        true -> :healthy
      end

    libcluster = ClusterScope.Cluster.Libcluster.health()
    # Simulated mode: virtual nodes' health too (Simulator.Data).
    {answers, node_errors} =
      Health.cluster_call(:local_health, []) |> SimData.add_health(:local_health)

    horde = horde_section(answers)

    alerts =
      answers
      |> Enum.flat_map(fn {_node, h} -> h.alerts end)
      |> Kernel.++(List.wrap(horde && horde.alert))
      |> Alerts.sort()

    worst = Alerts.worst(alerts)

    status =
      Enum.max_by(
        [
          connectivity_status,
          Health.severity_status(worst),
          if(node_errors == [], do: :healthy, else: :degraded),
          if(libcluster.status == :degraded, do: :degraded, else: :healthy),
          if(horde, do: horde.status, else: :healthy)
        ],
        &@rank[&1]
      )

    {:ok,
     SimData.mark(%{
       status: status,
       connectivity_status: connectivity_status,
       connectivity: c,
       nodes_by_status: counts,
       node_count: length(topology.nodes),
       worst_alert_severity: worst,
       alerts: alerts,
       per_node: Map.new(answers, fn {node, h} -> {node, Map.drop(h, [:node, :horde])} end),
       horde: horde,
       node_errors: node_errors,
       libcluster: libcluster
     })}
  end

  # The Horde section: each node's Horde values (skew over live members,
  # duplicates, lost children, members not connected: their alerts are in
  # `alerts`), the worst of each, and what only a comparison of nodes shows
  # (members lists that differ, registry replicas that differ). nil when no
  # node runs Horde.
  defp horde_section(answers) do
    parts = for {node, %{horde: %{} = part}} <- answers, do: {node, part}

    if parts != [] do
      values = Map.new(parts, fn {node, part} -> {node, part.values} end)
      compared = ClusterScope.Horde.Findings.compare(parts)

      worst =
        for key <- Map.keys(ClusterScope.Horde.Findings.values(nil)), into: %{} do
          numbers = for {_n, v} <- values, is_number(v[key]), do: v[key]
          {key, Enum.max(numbers, fn -> nil end)}
        end

      disagree? = compared.membership_disagreements != [] or compared.replica_disagreements != []

      disagreeing =
        compared.membership_disagreements |> Enum.flat_map(& &1.disagreeing) |> Enum.uniq()

      metric = :horde_membership_disagreements
      thresholds = ClusterScope.Health.Monitor.thresholds() || Thresholds.defaults()
      levels = thresholds.metrics[metric]
      now = System.system_time(:millisecond)
      alert = Alerts.instant(metric, length(disagreeing), levels, node(), now)

      %{
        status: if(disagree?, do: :degraded, else: :healthy),
        values_by_node: values,
        worst: worst,
        membership_disagreements: compared.membership_disagreements,
        alert: alert,
        replica_disagreements: compared.replica_disagreements,
        missing_on: compared.missing_on
      }
    end
  end
end
