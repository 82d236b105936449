defmodule ClusterScope.Sandbox.Placement do
  @moduledoc """
  Where a sandbox's processes go: the one caller of the Rust placement
  (`cluster_scope_core::placement`, see its docs for the four strategies).

  Used for creation, failover (the lost node's processes over the
  survivors, counting what each already runs) and migration. Least loaded
  reads the nodes' load from their health monitors
  (`ClusterScope.Health`): a node's load figure is its scheduler
  utilisation (0..1) plus its run queue / 10, and each process placed
  counts `1 / count` (the whole sandbox as one scheduler's worth), so a
  busy node gets fewer processes, not none. A node whose health cannot be
  read counts as idle (the reason is in the answer).

  Cost: O(count * log nodes) in the core; above 10,000 processes the dirty
  variant runs.
  """

  alias ClusterScope.Native

  @dirty_above 10_000

  @doc """
  Places `count` processes on `nodes` (`[{node, load, current}]`). Returns
  the node of each process, in order.
  """
  @spec place(
          atom(),
          non_neg_integer(),
          [{node(), number(), non_neg_integer()}],
          non_neg_integer()
        ) ::
          {:ok, [node()]} | {:error, term()}
  def place(strategy, count, nodes, offset \\ 0) do
    loads = Enum.map(nodes, fn {_n, load, current} -> {load * 1.0, current} end)
    weight = 1.0 / max(count, 1)
    name = Atom.to_string(strategy)

    result =
      if count > @dirty_above,
        do: Native.placement_place_dirty(name, count, loads, offset, weight),
        else: Native.placement_place(name, count, loads, offset, weight)

    case result do
      {:ok, indices} ->
        names = List.to_tuple(Enum.map(nodes, &elem(&1, 0)))
        {:ok, Enum.map(indices, &elem(names, &1))}

      {:error, _} = error ->
        error
    end
  end

  @doc """
  The load figure of each of `nodes` from its health monitor, and the
  errors of the nodes that could not say (counted as 0).
  """
  @spec loads([node()]) :: {%{node() => float()}, [map()]}
  def loads(nodes) do
    {answers, errors} = ClusterScope.Health.cluster_call(:local_health, [], nodes)

    loads =
      Map.new(nodes, fn n ->
        summary =
          case List.keyfind(answers, n, 0) do
            {_, %{summary: s}} when is_map(s) -> s
            _ -> %{}
          end

        util = (summary[:scheduler_utilization_pct] || 0) / 100
        rq = (summary[:run_queue] || 0) / 10
        {n, max(util + rq, 0.0) * 1.0}
      end)

    {loads, errors}
  end
end
