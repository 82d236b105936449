defmodule ClusterScope.Agent.Processes.WindowCoalescingTest do
  # Concurrent window queries on one node share one window collection.
  use ExUnit.Case, async: false

  alias ClusterScope.Agent.Processes.Snapshots
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  @window 2_000
  @callers 8

  setup_all do
    [a, b] = Cluster.start(2)
    bare = Cluster.start_agentless(a, 41)
    %{a: a, b: b, bare: bare}
  end

  # A window with no row filter collects thin snapshots (numbers only).
  defp stats(peer), do: Cluster.call(peer, Snapshots, :stats, [:thin])

  test "N concurrent window queries on a node run one window and all get answers", ctx do
    b = Atom.to_string(ctx.b.node)
    # Any window start left by another test is then too old to join.
    Process.sleep(@window + 100)
    before = stats(ctx.b)
    started = System.monotonic_time(:millisecond)
    params = %{"window_ms" => @window, "node" => b, "sort_by" => "reductions", "limit" => 5}

    answers =
      1..@callers
      |> Enum.map(fn i ->
        # Served by both peers, so the requests reach b from two nodes.
        from = if rem(i, 2) == 0, do: ctx.a, else: ctx.b

        Task.async(fn ->
          Cluster.call(from, ClusterScope, :run, ["process_list", params], 60_000)
        end)
      end)
      |> Enum.map(&Task.await(&1, 60_000))

    elapsed = System.monotonic_time(:millisecond) - started
    later = stats(ctx.b)

    for answer <- answers do
      assert {:ok, %{window: window, processes: [_ | _]} = data} = answer
      assert data.nodes == [ctx.b.node]
      assert window.interval_ms >= @window
    end

    assert later.windows - before.windows == 1
    # The start and the end snapshot, nothing per caller.
    assert later.collections - before.collections == 2
    # About one window, not one per caller (nor two in a row).
    assert elapsed < 2 * @window, "took #{elapsed} ms"
  end

  test "a request for a window no longer than the current start's age starts a new one", ctx do
    first = Task.async(fn -> Cluster.call(ctx.b, Snapshots, :window, [1_500], 30_000) end)
    Process.sleep(600)
    # Joins: its window of 1 000 ms starts at the shared start, ends sooner.
    joined = Cluster.call(ctx.b, Snapshots, :window, [1_000], 30_000)
    # The start is about 600 ms old: a 300 ms window cannot use it.
    own = Cluster.call(ctx.b, Snapshots, :window, [300], 30_000)
    {:ok, start, end1} = Task.await(first, 30_000)

    assert {:ok, ^start, end2} = joined
    assert end2.taken_at_ms - start.taken_at_ms >= 1_000
    assert end1.taken_at_ms - start.taken_at_ms >= 1_500
    assert {:ok, other_start, end3} = own
    assert other_start.taken_at_ms > start.taken_at_ms
    assert end3.taken_at_ms - other_start.taken_at_ms >= 300
  end

  test "window queries for an agentless node, served by one node, share one window", ctx do
    bare = Atom.to_string(ctx.bare.node)
    source = {:agentless, ctx.bare.node}
    params = %{"window_ms" => @window, "node" => bare, "limit" => 3}
    before = Cluster.call(ctx.a, Snapshots, :stats, [source])
    # A memory window lists processes that grew: one grows on the bare node
    # through the window (an idle node may have none, now that the reading
    # stream leaves itself out).
    # (OTP code only there: messages it never reads make it grow.)
    grower = Cluster.call(ctx.bare, :erlang, :spawn, [:timer, :sleep, [:infinity]])

    feeder =
      spawn(fn ->
        for _ <- 1..div(3 * @window, 100) do
          send(grower, List.duplicate(:grow, 1_000))
          Process.sleep(100)
        end
      end)

    on_exit(fn ->
      Process.exit(feeder, :kill)
      Process.exit(grower, :kill)
    end)

    started = System.monotonic_time(:millisecond)

    answers =
      1..@callers
      |> Enum.map(fn _ ->
        Task.async(fn ->
          Cluster.call(ctx.a, ClusterScope, :run, ["process_list", params], 60_000)
        end)
      end)
      |> Enum.map(&Task.await(&1, 60_000))

    elapsed = System.monotonic_time(:millisecond) - started
    later = Cluster.call(ctx.a, Snapshots, :stats, [source])

    for answer <- answers do
      assert {:ok, %{agentless: [_], window: window, processes: [_ | _]}} = answer
      assert window.interval_ms >= @window
    end

    assert later.windows - before.windows == 1
    assert later.collections - before.collections == 2
    assert elapsed < 2 * @window, "took #{elapsed} ms"

    # Pages of an agentless node reuse its snapshot like an agent's own.
    {:ok, _} = Cluster.call(ctx.a, ClusterScope, :run, ["process_list", %{"node" => bare}])
    {:ok, _} = Cluster.call(ctx.a, ClusterScope, :run, ["process_list", %{"node" => bare}])
    assert Cluster.call(ctx.a, Snapshots, :stats, [source]).collections <= later.collections + 1
  end
end
