defmodule ClusterScope.Cluster.PartitionTest do
  # Real partitions: peers on loopback aliases, cut with iptables, frozen
  # with SIGSTOP. Each scenario must be detected and classified within 3 s
  # (the benchmark measures the real latency), and the tool must answer on
  # both sides.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag :chaos
  @moduletag timeout: 180_000

  defp healthy(peers) do
    n = length(peers)

    for p <- peers do
      Cluster.await_run(
        p,
        "partition_status",
        fn d ->
          d.classification.status == :healthy and map_size(d.heartbeat.peers) == n - 1
        end,
        10_000
      )
    end
  end

  # Waits until the classification has the expected status and `also` holds
  # (a fault spreads through the views in a few heartbeats: intermediate
  # classifications are expected on the way).
  defp status(peer, expected, timeout \\ 3_000, also \\ fn _ -> true end) do
    Cluster.await_run(
      peer,
      "partition_status",
      &(&1.classification.status == expected and also.(&1.classification)),
      timeout
    ).classification
  end

  defp names(peers), do: peers |> Enum.map(&Atom.to_string(&1.node)) |> Enum.sort()

  test "one node cut off completely: a split with the node alone on the minority side" do
    [a, b, c, x] = peers = Cluster.start(4)
    healthy(peers)

    Cluster.cut_all(for p <- [a, b, c], do: {p, x})

    c_a = status(a, :split, 3_000, &(length(&1.components) == 2))
    assert c_a.side == :majority

    assert Enum.sort(Enum.map(c_a.components, &Enum.sort/1)) ==
             Enum.sort([names([a, b, c]), names([x])])

    # The isolated node answers too, and knows it is alone.
    c_x = status(x, :split, 3_000, &(&1.side == :minority))
    assert Enum.at(c_x.components, c_x.self_component) == names([x])

    # Heal: reconnect and see the heal event and a healthy cluster again.
    mark = Cluster.last_cluster_event(a)
    Cluster.heal_all()
    :ok = Cluster.reconnect(peers)
    Cluster.await_cluster_event(a, &(&1.type == :heal), after: mark, timeout: 10_000)
    status(a, :healthy, 10_000)
  end

  test "a frozen node (SIGSTOP) is classified frozen, not split" do
    [a, b, x] = peers = Cluster.start(3)
    healthy(peers)
    mark = Cluster.last_cluster_event(a)
    mark_b = Cluster.last_cluster_event(b)
    :ok = Cluster.freeze(x)
    on_exit(fn -> Cluster.resume(x) end)

    c = status(a, :frozen)
    assert c.frozen == names([x])

    # A subscriber hears of it: first suspected, then frozen.
    assert Cluster.await_cluster_event(
             a,
             &(&1.type == :suspect and &1.node == x.node and &1.details.status == :frozen),
             after: mark
           )

    # b too. Frozen lasts until Erlang's tick timeout (3 s here) closes the
    # link; the event is there whenever this asks.
    assert %{details: %{frozen: frozen}} =
             Cluster.await_cluster_event(
               b,
               &(&1.type == :partition and &1.details.status == :frozen),
               after: mark_b
             )

    assert frozen == names([x])

    :ok = Cluster.resume(x)
  end

  test "one-way loss: a no longer hears b, b still hears a" do
    [a, b, c] = peers = Cluster.start(3)
    healthy(peers)
    marks = Map.new([a, c], &{&1.node, Cluster.last_cluster_event(&1)})
    # b's data to a is lost, its acknowledgements pass: the one-way loss a
    # TCP connection carries until the tick timeout. (Dropping b's ACKs too
    # closes a's window within a retransmission timeout, and b stops hearing
    # a a few hundred ms after a stops hearing b: the benchmark's one_way.)
    :ok = Cluster.cut(a, b, :one_way_data)

    # The events catch the window whatever the polling.
    one_way = &(&1.type == :partition and &1.details.status == :one_way)

    # c hears both and relays their views: it sees the asymmetry.
    event = Cluster.await_cluster_event(c, one_way, after: marks[c.node])

    assert event.details.one_way == [
             %{not_hearing: Atom.to_string(a.node), silent: Atom.to_string(b.node)}
           ]

    assert %{details: %{one_way: [_]}} =
             Cluster.await_cluster_event(a, one_way, after: marks[a.node])

    # And it lasts: b still hears a (a's data and b's ACKs flow).
    Process.sleep(500)
    assert %{status: :one_way} = status(c, :one_way, 300)
  end

  test "a single cut link in a 3-node mesh is indirect" do
    [a, b, c] = peers = Cluster.start(3)
    healthy(peers)
    marks = Map.new([a, c], &{&1.node, Cluster.last_cluster_event(&1)})
    :ok = Cluster.cut(a, b)

    # Indirect lasts until Erlang's tick timeout (3 s here), after which
    # global cuts one side off: the events hold it whatever the polling.
    indirect = &(&1.type == :partition and &1.details.status == :indirect)
    event = Cluster.await_cluster_event(c, indirect, after: marks[c.node])
    assert [%{a: x, b: y, via: via}] = event.details.indirect
    assert Enum.sort([x, y]) == names([a, b])
    assert via == names([c])

    assert %{details: %{indirect: [_]}} =
             Cluster.await_cluster_event(a, indirect, after: marks[a.node])
  end

  test "links that global cuts to prevent overlapping partitions are attributed to it" do
    # With a-b cut, Erlang drops a-b after the tick time; global (OTP 25+,
    # prevent_overlapping_partitions) then disconnects c from one side on its
    # own. That nodedown must say so.
    [a, b, c] = peers = Cluster.start(3)
    healthy(peers)
    marks = Map.new(peers, &{&1.node, Cluster.last_cluster_event(&1)})
    :ok = Cluster.cut(a, b)

    attributed = await_global_attribution([a, b, c], marks)

    assert attributed, "no nodedown attributed to global within 15 s"
    assert attributed.cause =~ "global"
  end

  test "global's cuts are attributed with the logger at :error (production's usual level)" do
    # The same partition as above, on nodes whose primary logger level drops
    # global's warning before any handler sees it.
    [a, b, c] = peers = Cluster.start(3)
    healthy(peers)
    levels = Map.new(peers, &{&1.node, Cluster.call(&1, :logger, :get_primary_config, []).level})
    for p <- peers, do: :ok = Cluster.call(p, :logger, :set_primary_config, [:level, :error])
    marks = Map.new(peers, &{&1.node, Cluster.last_cluster_event(&1)})
    :ok = Cluster.cut(a, b)

    attributed = await_global_attribution([a, b, c], marks)

    assert attributed, "no nodedown attributed to global within 15 s at logger level :error"
    assert attributed.cause =~ "global"

    for p <- peers, do: Cluster.call(p, :logger, :set_primary_config, [:level, levels[p.node]])
  end

  test "a clean 2-2 split is a tie on both sides" do
    [a, b, c, d] = peers = Cluster.start(4)
    healthy(peers)
    Cluster.cut_all(for x <- [a, b], y <- [c, d], do: {x, y})

    for p <- peers do
      cl = status(p, :split, 3_000, &(&1.side == :tie))
      assert length(cl.components) == 2
    end
  end

  test "a 3-2 split: majority on one side, minority on the other, and both answer" do
    [a, b, c, d, e] = peers = Cluster.start(5)
    healthy(peers)
    Cluster.cut_all(for x <- [a, b, c], y <- [d, e], do: {x, y})

    three_two = &(Enum.map(&1.components, fn comp -> length(comp) end) == [3, 2])
    assert %{side: :majority, components: [big, small]} = status(a, :split, 3_000, three_two)
    assert Enum.sort(big) == names([a, b, c]) and Enum.sort(small) == names([d, e])
    assert %{side: :minority} = status(e, :split, 3_000, three_two)

    {:ok, health} = Cluster.call(e, ClusterScope, :run, ["cluster_health", %{}])
    assert health.status == :critical
    {:ok, health} = Cluster.call(a, ClusterScope, :run, ["cluster_health", %{}])
    assert health.status == :degraded

    # Erlang gives up on the other side after the tick time (3 s here): the
    # split is still a split, not a healthy 3-node cluster or a crash.
    for {p, about} <- [{a, d}, {a, e}, {e, a}, {e, c}] do
      Cluster.await_event(p, :nodedown, about, timeout: 15_000)
    end

    Process.sleep(500)
    assert %{side: :majority, components: [^big, ^small]} = status(a, :split, 3_000, three_two)
    assert %{side: :minority} = status(e, :split, 3_000, three_two)

    topology = Cluster.call(a, ClusterScope.Cluster.State, :topology, [])
    statuses = Map.new(topology.nodes, &{&1.node, &1.status})
    assert statuses[d.node] == :down and statuses[e.node] == :down
  end

  # The first nodedown after `marks` that any of `peers` attributes to
  # global, within 15 s (nil if none).
  defp await_global_attribution(peers, marks) do
    Cluster.poll(System.monotonic_time(:millisecond) + 15_000, fn ->
      Enum.find_value(peers, fn p ->
        p
        |> Cluster.call(ClusterScope.Test.NodeWatcher, :cluster_events, [])
        |> Enum.find(
          &(&1.id > marks[p.node] and &1.type == :down and &1.details.attribution == :global)
        )
      end)
    end)
  end
end
