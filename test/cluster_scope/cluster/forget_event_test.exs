defmodule ClusterScope.Cluster.ForgetEventTest do
  # A forgotten node leaves the history with an event, so whatever replays
  # the events (the dashboard's timeline) drops it too; one never known
  # makes no event.
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.State

  test "forgetting a known node records a forgotten event; an unknown one does not" do
    node = :"forget_me@127.0.0.1"
    mark = State.events(0, 1_000) |> List.last() |> then(&((&1 && &1.id) || 0))
    send(State, {:nodeup, node, [node_type: :visible]})
    send(State, {:nodedown, node, [node_type: :visible, nodedown_reason: :connection_closed]})

    assert ClusterScope.Test.Cluster.poll(System.monotonic_time(:millisecond) + 3_000, fn ->
             Enum.any?(State.topology().nodes, &(&1.node == node))
           end)

    :ok = State.forget(node)
    events = State.events(mark, 1_000)
    assert [%{type: :forgotten, node: ^node}] = Enum.filter(events, &(&1.type == :forgotten))
    refute Enum.any?(State.topology().nodes, &(&1.node == node))

    :ok = State.forget(:"never_known@127.0.0.1")
    refute Enum.any?(State.events(mark, 1_000), &(&1.node == :"never_known@127.0.0.1"))
  end
end
