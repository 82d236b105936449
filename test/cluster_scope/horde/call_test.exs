defmodule ClusterScope.Horde.CallTest do
  # Every Horde call runs in a process of its own with a deadline: the
  # caller never waits longer, whatever the callee does.
  use ExUnit.Case, async: true

  alias ClusterScope.Horde.{Call, Discovery}

  test "a call that blocks is abandoned at its deadline and its process killed" do
    test = self()

    started = System.monotonic_time(:millisecond)

    assert {:error, {:timeout, 100}} =
             Call.run(
               fn ->
                 send(test, {:worker, self()})
                 Process.sleep(:infinity)
               end,
               100
             )

    assert System.monotonic_time(:millisecond) - started < 1_000
    assert_received {:worker, pid}
    refute Process.alive?(pid)
  end

  test "answers, exits and raises come back as values, never as the caller's crash" do
    assert {:ok, 3} = Call.run(fn -> 1 + 2 end)
    assert {:error, {:exit, :boom}} = Call.run(fn -> exit(:boom) end)
    assert {:error, {:raise, msg}} = Call.run(fn -> raise "nope" end)
    assert msg =~ "nope"
    assert Call.describe({:timeout, 5}) =~ "5 ms"
  end

  test "state/2 of a process that does not answer system messages ends at the deadline" do
    pid = spawn(fn -> Process.sleep(:infinity) end)
    assert {:error, _} = Call.state(pid, 100)
  end

  test "callable_nodes: this node and unknown-but-connected nodes are up; others are skipped with their status" do
    {up, skipped} = Call.callable_nodes([node()])
    assert up == [node()] and skipped == []
  end

  test "an unknown name is an error naming it and never creates an atom" do
    name = "NoSuch.Registry#{System.unique_integer([:positive])}"
    assert {:error, message} = Discovery.resolve(:registry, name)
    assert message =~ name
    assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    assert_raise ArgumentError, fn -> String.to_existing_atom("Elixir." <> name) end
  end
end
