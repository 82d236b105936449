defmodule ClusterScope.Operations.ClusterOs do
  @moduledoc """
  `GET /api/v1/cluster/os`: the machines of every node (or of `nodes`) at
  once: one row per node (`node` on each) with its CPU load, memory, swap,
  disks and cgroup limits (`ClusterScope.NodeViews.Os`), and a summary of
  the most loaded: the node with the most memory in use, the fullest file
  system (with its node) and the highest load per CPU.

  Nodes without ClusterScope, nodes this node sees as not up (not called)
  and nodes that do not answer within the node timeout are in
  `node_errors`, and the answer is then `partial`.

  Cost: one remote call per node, in parallel (see `node_os` for what each
  node does); the caller's work is linear in the nodes (the summary is a
  maximum over at most one row per node, so it is computed here, not in
  the native core). Bounded by the node timeout.
  """

  use ClusterScope.Operation, name: "cluster_os"

  alias ClusterScope.Fanout
  alias ClusterScope.NodeViews.Os

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/os",
      summary: "CPU load, memory, swap, disks and cgroup limits of every node's machine",
      parameters: [
        %{
          name: :nodes,
          type: :array,
          items: :node,
          required: false,
          max_length: 1_000,
          location: :query,
          description: "the nodes to ask (default: every node up with ClusterScope)"
        },
        %{
          name: :disks,
          type: :boolean,
          required: false,
          default: true,
          location: :query,
          description: "read disk usage (one df run per node when disksup does not run)"
        }
      ],
      responses: %{200 => %{description: "one row per node, a summary and node errors"}}
    }
  end

  @impl true
  def execute(params) do
    {agents, agentless, skipped} = ClusterScope.Procs.targets()

    {agents, agentless, skipped} =
      case params[:nodes] do
        nodes when is_list(nodes) and nodes != [] ->
          wanted = Enum.uniq(nodes)

          {Enum.filter(agents, &(&1 in wanted)), Enum.filter(agentless, &(&1 in wanted)),
           Enum.filter(skipped, &(&1.node in wanted))}

        _ ->
          {agents, agentless, skipped}
      end

    {answers, errors} =
      Fanout.multicall(agents, Os, :read, [%{disks: Map.get(params, :disks, true)}])

    rows = for {_node, %{} = row} <- answers, do: row
    bad = for {node, other} <- answers, not is_map(other), do: unexpected(node, other)

    node_errors = skipped ++ errors ++ bad ++ Enum.map(agentless, &agentless_error/1)

    {:ok,
     %{
       nodes: Enum.map(rows, & &1.node),
       rows: Enum.sort_by(rows, &Atom.to_string(&1.node)),
       summary: summary(rows),
       node_errors: node_errors,
       partial: node_errors != []
     }}
  end

  defp summary(rows) do
    memory =
      rows
      |> Enum.filter(&(is_map(&1.memory) and is_number(&1.memory.used_pct)))
      |> Enum.max_by(& &1.memory.used_pct, fn -> nil end)

    disk =
      rows
      |> Enum.flat_map(fn row ->
        case Os.fullest(row.disks) do
          nil -> []
          d -> [Map.put(Map.take(d, [:mount, :used_pct, :total_bytes]), :node, row.node)]
        end
      end)
      |> Enum.max_by(& &1.used_pct, fn -> nil end)

    load =
      rows
      |> Enum.filter(&(is_map(&1.load) and is_number(&1.load.load1) and &1.load.cpus > 0))
      |> Enum.max_by(&(&1.load.load1 / &1.load.cpus), fn -> nil end)

    %{
      node_count: length(rows),
      most_memory_used: memory && %{node: memory.node, used_pct: memory.memory.used_pct},
      fullest_disk: disk,
      highest_load_per_cpu:
        load &&
          %{
            node: load.node,
            load1: load.load.load1,
            per_cpu: Float.round(load.load.load1 / load.load.cpus, 2)
          }
    }
  end

  defp agentless_error(node) do
    %{
      node: node,
      status: :not_running,
      agentless: true,
      reason: "ClusterScope is not running on #{node}: its OS data is read by its own agent",
      remediation: "Add :cluster_scope to #{node}'s release."
    }
  end

  defp unexpected(node, other) do
    %{
      node: node,
      status: :error,
      reason: "unexpected answer: #{inspect(other, limit: 5)}",
      remediation: "See #{node}'s log."
    }
  end
end
