defmodule ClusterScope.Fanout.RetryTest do
  # The retry rules, and Fanout retrying a transient failure on this node (a
  # server that is not there yet: noproc). The real node cases (a frozen
  # peer) are in test/cluster_scope/operation/partition_policy_test.exs.
  use ExUnit.Case, async: true

  alias ClusterScope.Fanout
  alias ClusterScope.Fanout.Retry

  test "transient: no connection, no answer in time, a server restarting; nothing else" do
    assert Retry.transient?({:error, {:erpc, :noconnection}})
    assert Retry.transient?({:error, {:erpc, :timeout}})
    assert Retry.transient?({:exit, {:exception, {:noproc, {GenServer, :call, []}}}})
    refute Retry.transient?({:error, {:exception, :badarg, []}})

    refute Retry.transient?(
             {:error, {:exception, {:cluster_scope_protocol_mismatch, {3, 3}}, []}}
           )

    refute Retry.transient?({:throw, :nope})
    refute Retry.transient?({:ok, :fine})
  end

  test "bounded exponential backoff, only for idempotent runs, within the deadline" do
    assert Enum.map(1..3, &Retry.backoff_ms/1) == [100, 200, 400]
    now = 1_000_000
    ctx = %{idempotent: true, deadline: now + 5_000}

    assert {:retry, 100, 1_000} = Retry.next(ctx, 1, 1_000, now)
    # The call's timeout is cut to what is left before the deadline.
    assert {:retry, 200, t} = Retry.next(%{ctx | deadline: now + 800}, 2, 5_000, now)
    assert t == 800 - 50 - 200
    # Not enough time left for a useful attempt.
    assert Retry.next(%{ctx | deadline: now + 300}, 2, 5_000, now) == :stop
    # Attempts are bounded.
    assert Retry.next(ctx, Retry.max_attempts(), 1_000, now) == :stop
    # Not idempotent, or no run at all: never.
    assert Retry.next(%{ctx | idempotent: false}, 1, 1_000, now) == :stop
    assert Retry.next(nil, 1, 1_000, now) == :stop
  end

  defp register_later(name, after_ms) do
    test = self()

    spawn(fn ->
      Process.sleep(after_ms)
      Process.register(self(), name)
      send(test, :registered)

      receive do
        {:"$gen_call", from, :ping} -> GenServer.reply(from, :pong)
      end

      receive do
        :stop -> :ok
      end
    end)
  end

  test "an idempotent run retries a node whose server is restarting and reports it answered" do
    name = :"retry_test_#{System.unique_integer([:positive])}"
    register_later(name, 250)
    ref = make_ref()
    ctx = %{idempotent: true, deadline: System.monotonic_time(:millisecond) + 3_000}
    ctx = Map.merge(ctx, %{report_to: self(), ref: ref})

    {oks, errors} =
      Retry.run(ctx, fn -> Fanout.multicall([node()], GenServer, :call, [name, :ping], 1_000) end)

    assert errors == []
    assert oks == [{node(), :pong}]
    assert Retry.collect(ref) == [node()]
  end

  test "without an idempotent run the same failure is reported at once, with no retry" do
    name = :"retry_test_#{System.unique_integer([:positive])}"
    register_later(name, 250)

    {oks, [error]} =
      Retry.run(%{idempotent: false, deadline: System.monotonic_time(:millisecond) + 3_000}, fn ->
        Fanout.multicall([node()], GenServer, :call, [name, :ping], 1_000)
      end)

    assert oks == []
    assert error.node == node()
    assert error.reason =~ "noproc"
    refute Map.has_key?(error, :attempts)
  end

  test "attempts that all fail are counted in the node error, and the deadline holds" do
    name = :"retry_test_never_#{System.unique_integer([:positive])}"
    deadline = System.monotonic_time(:millisecond) + 1_000
    started = System.monotonic_time(:millisecond)

    {[], [error]} =
      Retry.run(%{idempotent: true, deadline: deadline}, fn ->
        Fanout.multicall([node()], GenServer, :call, [name, :ping], 1_000)
      end)

    assert error.attempts > 1 and error.attempts <= Retry.max_attempts()
    assert System.monotonic_time(:millisecond) - started < 1_000
  end

  test "a node that cannot be reached is a node error, never a raise, and not retried outside a run" do
    nobody = :"cs_nobody_#{System.unique_integer([:positive])}@127.0.0.1"
    {[], [error]} = Fanout.multicall([nobody], ClusterScope.Agent, :resources, [], 2_000)
    assert error.node == nobody
    assert error.status in [:down, :error]
    refute Map.has_key?(error, :attempts)
  end
end
