defmodule ClusterScope.Operations.HordeClusterMembers do
  @moduledoc """
  `GET /api/v1/horde/members`: the members of every Horde registry and
  supervisor, with their status, compared with the connected nodes and with
  ClusterScope's view of the partition, so drift shows.

  For each registry and supervisor running on this node: every member with
  its Horde status (supervisors: `alive`, `uninitialized` - a visible node
  where it does not run, which `members: :auto` makes a member -,
  `shutting_down`, `dead`; registries keep no status: `member`), whether
  its node is connected here, and its status in ClusterScope's cluster state
  (`up`, `suspected`, `frozen`, `unreachable`, `down`, ...). Then the drift:

    * `not_connected` - members on nodes that are not connected or not up;
    * `connected_not_members` - visible connected nodes that are not
      members (expected members with `members: :auto`);
    * `membership_disagreements` - nodes whose member lists differ, from
      each up node's own view (through `ClusterScope.Fanout`);
    * `missing_on` - nodes where a registry or supervisor does not run.

  Statuses are read from the supervisor's internal state
  (`members_info`, Horde 0.10) with a deadline, in a process of its own
  (`ClusterScope.Horde.Call`): `Horde.Cluster.members/1` gives no status.
  Requires Horde: without it the operation is listed as unavailable and
  answers 503.
  """

  use ClusterScope.Operation, name: "horde_cluster_members", requires: [:horde]

  alias ClusterScope.Horde.{Findings, Inspect}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/horde/members",
      summary: "Horde members with status, against connected nodes and the partition view",
      parameters: [],
      responses: %{200 => %{description: "members of every Horde registry and supervisor"}}
    }
  end

  @impl true
  def execute(_params) do
    local = Inspect.local_summary()
    statuses = ClusterScope.Fanout.node_statuses()
    visible = MapSet.new(Node.list(:visible))
    {summaries, node_errors} = Inspect.fan(:local_summary, [])
    compared = Findings.compare(summaries)

    items =
      for item <- local.supervisors ++ local.registries do
        if Map.has_key?(item, :error) do
          item
        else
          members =
            for m <- item.members do
              %{
                node: m.node,
                name: m.name,
                status: Map.get(m, :status, :member),
                connected: m.node == node() or m.node in Node.list(:connected),
                cluster_status: if(m.node == node(), do: :up, else: Map.get(statuses, m.node))
              }
            end

          member_nodes = MapSet.new(members, & &1.node)

          %{
            kind: item.kind,
            name: item.name,
            members: members,
            not_connected: item.members_not_connected,
            connected_not_members: visible |> MapSet.difference(member_nodes) |> Enum.sort(),
            membership_disagreements:
              for(
                d <- compared.membership_disagreements,
                d.kind == item.kind and d.name == item.name,
                do: Map.drop(d, [:kind, :name])
              )
          }
        end
      end

    {:ok,
     %{
       node: node(),
       connected_nodes: Enum.sort(Node.list(:connected)),
       cluster_statuses: statuses,
       hordes: items,
       missing_on: compared.missing_on,
       node_errors: node_errors
     }}
  end
end
