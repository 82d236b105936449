defmodule ClusterScope.Operations.ClusterOs do
  @moduledoc """
  `GET /api/v1/cluster/os`: the machines of every node (or of `nodes`) at
  once: one row per node (`node` on each) with its CPU load, memory, swap,
  disks and cgroup limits (`ClusterScope.NodeViews.Os`), and a summary of
  the most loaded: the node with the most memory in use, the fullest file
  system (with its node) and the highest load per CPU.

  Nodes without ClusterScope are read from here with OTP calls
  (`ClusterScope.NodeViews.Os.read_remote/3`: their `/proc` files, no
  `df`; rows with `agentless: true`). Nodes this node sees as not up (not
  called) and nodes that do not answer within the node timeout are in
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

    {remote_rows, remote_errors} = read_agentless(agentless, params)

    rows = for({_node, %{} = row} <- answers, do: row) ++ remote_rows
    bad = for {node, other} <- answers, not is_map(other), do: unexpected(node, other)

    node_errors = skipped ++ errors ++ bad ++ remote_errors

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

  # Nodes without ClusterScope, read from here with OTP calls, all at once.
  defp read_agentless([], _params), do: {[], []}

  defp read_agentless(nodes, params) do
    timeout = Fanout.default_timeout()
    opts = %{disks: Map.get(params, :disks, true)}

    nodes
    |> Task.async_stream(&Os.read_remote(&1, opts, timeout),
      timeout: timeout + 1_000,
      on_timeout: :kill_task,
      ordered: true
    )
    |> Enum.zip(nodes)
    |> Enum.reduce({[], []}, fn
      {{:ok, {:ok, row}}, _node}, {rows, errs} ->
        {[row | rows], errs}

      {{:ok, {:error, reason}}, node}, {rows, errs} ->
        {rows, [Map.put(Fanout.describe(node, reason), :agentless, true) | errs]}

      {{:exit, _}, node}, {rows, errs} ->
        {rows, [agentless_timeout(node) | errs]}
    end)
    |> then(fn {rows, errs} -> {Enum.reverse(rows), Enum.reverse(errs)} end)
  end

  defp agentless_timeout(node) do
    %{
      node: node,
      status: :timeout,
      agentless: true,
      reason: "#{node} (no ClusterScope) did not answer its file reads in time",
      remediation: "The node may be overloaded, frozen or partitioned; check its load and links."
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
