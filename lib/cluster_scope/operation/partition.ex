defmodule ClusterScope.Operation.Partition do
  @moduledoc """
  The partition policy check the runner makes before an operation executes
  (see "Partition policy" in `ClusterScope.Operation`).

  `situation/0` reads this node's view of the cluster from
  `ClusterScope.Cluster.State` (its classification: status, this node's
  side, its component; and every known node's status); `decide/2` is pure:

    * `:anywhere` - always allowed;
    * `:majority` - refused when the cluster is not healthy and this node is
      on the minority side of a split or in a tie (the classification's
      side, computed against every member, so two sides never both claim
      the majority);
    * `:all_nodes` - refused unless the classification is healthy and every
      known node (departed ones aside) is up.

  A refusal is a `partition` error (`refusal/3`) that says which side this
  node is on, what it reaches, which nodes it cannot reach, and how to go
  on: run it from the majority side, wait for the heal, or pass
  `force_partition: true`.

  In `simulated` mode the check is skipped: the simulated nodes run
  nothing, so an operation cannot diverge from them. Without a running
  cluster state (ClusterScope stopping, a single node) it allows.

  Cost: one call to the state (its topology: O(N) to build) per run of an
  operation whose policy is not `:anywhere`; reads never pay it.
  """

  alias ClusterScope.Error

  @typedoc "What the check needs of this node's view of the cluster."
  @type situation :: %{
          status: atom(),
          side: atom() | nil,
          component: [String.t()],
          unreachable: [String.t()],
          description: String.t()
        }

  @doc "This node's view of the cluster, or `nil` when there is nothing to check against."
  @spec situation() :: situation() | nil
  def situation do
    topology = ClusterScope.Cluster.State.topology()
    if topology.mode == :simulated, do: nil, else: from_topology(topology)
  catch
    :exit, _ -> nil
  end

  @doc false
  # The situation of a topology as `ClusterScope.Cluster.State.topology/0` returns it.
  @spec from_topology(map()) :: situation()
  def from_topology(topology) do
    c = Map.get(topology, :classification) || %{}
    components = Map.get(c, :components, [])
    self_component = Map.get(c, :self_component)

    component =
      if is_integer(self_component),
        do: Enum.at(components, self_component, []),
        else: []

    others = components |> List.delete(component) |> List.flatten()

    not_up =
      for %{node: n, status: status} <- Map.get(topology, :nodes, []),
          status not in [:up, :departed],
          do: n

    %{
      status: Map.get(c, :status, :healthy),
      side: Map.get(c, :side),
      component: names(component),
      unreachable: names(others ++ not_up) -- [to_string(node())],
      description: Map.get(c, :description, "")
    }
  end

  @doc """
  Whether `policy` allows running here in `situation`: `:ok` or
  `{:refuse, why}` (`:minority` or `:unreachable`).
  """
  @spec decide(ClusterScope.Operation.partition_policy(), situation() | nil) ::
          :ok | {:refuse, :minority | :unreachable}
  def decide(:anywhere, _), do: :ok
  def decide(_policy, nil), do: :ok

  def decide(:majority, %{status: status, side: side}) do
    if status != :healthy and side in [:minority, :tie],
      do: {:refuse, :minority},
      else: :ok
  end

  def decide(:all_nodes, %{status: status, unreachable: unreachable}) do
    if status != :healthy or unreachable != [],
      do: {:refuse, :unreachable},
      else: :ok
  end

  @doc "The facts recorded in the metadata of a run (refused or forced)."
  @spec facts(ClusterScope.Operation.partition_policy(), situation(), boolean()) :: map()
  def facts(policy, situation, forced) do
    %{
      policy: policy,
      forced: forced,
      status: situation.status,
      side: situation.side,
      component: situation.component,
      unreachable: situation.unreachable
    }
  end

  @doc "The `partition` error of a refusal."
  @spec refusal(map(), situation(), :minority | :unreachable) :: Error.t()
  def refusal(meta, situation, why) do
    here = node()

    where =
      case {why, situation.side} do
        {:minority, :tie} ->
          "#{here} is in a tie: its side of the split holds exactly half of the nodes"

        {:minority, _} ->
          "#{here} is on the minority side of a split"

        {:unreachable, side} when side in [:minority, :tie] ->
          "#{here} is on the #{side} side of a split"

        {:unreachable, _} ->
          "the cluster is not whole as seen from #{here} (#{situation.status})"
      end

    needs =
      case meta.partition do
        :majority -> "the majority side"
        :all_nodes -> "every node reachable"
      end

    message =
      "#{meta.name} changes the cluster and needs #{needs} (partition policy " <>
        "#{meta.partition}), but #{where}: it reaches " <>
        "#{list(situation.component -- [to_string(here)])} and " <>
        "cannot reach #{list(situation.unreachable)}"

    remediation =
      case meta.partition do
        :majority ->
          ["Run it from a node on the majority side (not one of #{list([to_string(here)])})."]

        :all_nodes ->
          ["Bring the unreachable nodes back (or forget departed ones) and retry."]
      end ++
        [
          "Or wait for the partition to heal: GET /api/v1/cluster/partitions shows it.",
          "Or force it here with force_partition: true (control scope): the answer records " <>
            "metadata.partition.forced, and what it changes may diverge from the other side."
        ]

    Error.new(:partition, message,
      details: facts(meta.partition, situation, false) |> Map.put(:operation, meta.name),
      remediation: remediation
    )
  end

  defp names(nodes), do: nodes |> Enum.map(&to_string/1) |> Enum.uniq() |> Enum.sort()

  defp list([]), do: "no other node"
  defp list(nodes), do: Enum.join(nodes, ", ")
end
