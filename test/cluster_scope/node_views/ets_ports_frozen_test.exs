defmodule ClusterScope.NodeViews.EtsPortsFrozenTest do
  # A frozen node costs the ETS and port views the node timeout, no more:
  # the others answer, the frozen one is in node_errors.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  test "a frozen peer is reported in node_errors while the others answer", _ctx do
    [a, b, c] = Cluster.start(3)
    Cluster.freeze(c)
    on_exit(fn -> Cluster.resume(c) end)

    for {op, key} <- [{"ets_tables", :tables}, {"cluster_ports", :ports}] do
      started = System.monotonic_time(:millisecond)
      {:ok, answer} = Cluster.call(a, ClusterScope, :run, [op, %{"limit" => 50}], 30_000)
      took = System.monotonic_time(:millisecond) - started

      # The node timeout is 5 s; generous bound for a loaded machine.
      assert took < 15_000, "#{op} took #{took} ms"
      assert [%{node: node, status: status}] = answer.node_errors
      assert node == c.node and status in [:timeout, :down]
      assert Enum.sort(answer.nodes) == Enum.sort([a.node, b.node])
      rows = Map.fetch!(answer, key)

      assert rows |> Enum.map(& &1.node) |> Enum.uniq() |> Enum.sort() ==
               Enum.sort([a.node, b.node])
    end
  end
end
