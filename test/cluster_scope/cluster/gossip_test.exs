defmodule ClusterScope.Cluster.GossipTest do
  # The gossip protocol on virtual nodes in one process: every message goes
  # through `deliver/3`, which drops what a cut link would drop.
  use ExUnit.Case, async: true

  alias ClusterScope.Cluster.Gossip

  @interval 200

  defp names(n), do: for(i <- 1..n, do: :"g#{i}@127.0.0.9")

  # A world: gossip states, links that are cut (from -> to), frozen nodes,
  # and the time. Each node's view is what its links let it hear (a real
  # node's detectors say the same after ~0.7 s; the protocol does not care
  # how the view is made).
  defp world(nodes) do
    %{
      nodes: nodes,
      g: Map.new(nodes, &{&1, Gossip.new(&1, @interval, 1_000)}),
      cut: MapSet.new(),
      frozen: MapSet.new(),
      now: 0,
      sent: 0,
      bytes: 0
    }
  end

  defp link_up?(w, from, to),
    do: not MapSet.member?(w.cut, {from, to}) and not MapSet.member?(w.frozen, from)

  defp view_of(w, node) do
    for other <- w.nodes, other != node, into: %{} do
      {other, if(link_up?(w, other, node), do: :reachable, else: :unreachable)}
    end
  end

  # One interval: every live node ticks (in order) and beats every other.
  defp step(w, view_fun) do
    w = %{w | now: w.now + @interval}

    Enum.reduce(w.nodes, w, fn node, w ->
      if MapSet.member?(w.frozen, node) do
        w
      else
        {g, beat} = Gossip.tick(w.g[node], view_fun.(w, node), w.now)
        w = put_in(w.g[node], g)

        Enum.reduce(w.nodes -- [node], w, fn to, w -> deliver(w, node, to, beat) end)
      end
    end)
  end

  defp rounds(w, n, view_fun \\ &view_of/2),
    do: Enum.reduce(1..n, w, fn _, w -> step(w, view_fun) end)

  defp deliver(w, from, to, message) do
    w = %{w | sent: w.sent + 1, bytes: w.bytes + byte_size(:erlang.term_to_binary(message))}

    if link_up?(w, from, to) and not MapSet.member?(w.frozen, to) do
      receive_message(w, to, message)
    else
      w
    end
  end

  defp receive_message(w, node, message) do
    g = w.g[node]

    {g, out} =
      case message do
        {:cs_hb, _, _, _, _, _, _} -> Gossip.beat(g, message, w.now)
        {:cs_relay, _, items} -> {Gossip.relay(g, items, w.now), []}
        {:cs_pull, from} -> {g, [{from, Gossip.pull_reply(g)}]}
        {:cs_sync, from, versions} -> {g, [{from, Gossip.sync_reply(g, versions, w.now)}]}
      end

    w = put_in(w.g[node], g)
    Enum.reduce(out, w, fn {to, msg}, w -> deliver(w, node, to, msg) end)
  end

  defp fresh?(w, at, about) do
    case w.g[at].views[about] do
      %{at_ms: t} -> w.now - t <= Gossip.stale_after_ms(@interval)
      nil -> false
    end
  end

  defp view_at(w, at, about), do: w.g[at].views[about][:view]

  test "a beat's size does not depend on the number of nodes while nothing changes" do
    sizes =
      for n <- [4, 24, 100] do
        w = rounds(world(names(n)), 5)
        [a | _] = w.nodes
        {_g, beat} = Gossip.tick(w.g[a], view_of(w, a), w.now + @interval)
        assert {:cs_hb, ^a, _, _, nil, [], _} = beat
        # Every node holds every fresh view, and no answer is needed.
        assert Enum.all?(w.nodes, &fresh?(w, a, &1))
        byte_size(:erlang.term_to_binary(beat))
      end

    # Equal up to the length of the names and of the digest's integers.
    assert Enum.max(sizes) <= Enum.min(sizes) + 8,
           "beat sizes #{inspect(sizes, charlists: :as_lists)}"
  end

  test "steady state: one beat per peer per interval and nothing else" do
    nodes = names(12)
    w = rounds(world(nodes), 5)
    w = %{w | sent: 0, bytes: 0}
    w = rounds(w, 10)
    assert w.sent == 10 * 12 * 11
  end

  test "a view change reaches every node in the interval it happens" do
    nodes = [a | _] = names(6)
    w = rounds(world(nodes), 3)

    changed = fn w, node ->
      if node == a, do: Map.put(view_of(w, node), :extra@x, :reachable), else: view_of(w, node)
    end

    w = step(w, changed)

    for n <- nodes, do: assert(view_at(w, n, a)[:extra@x] == :reachable, "#{n} did not get it")
  end

  test "a missed view is pulled from its owner at the next beat" do
    [a, b, c] = nodes = names(3)
    w = rounds(world(nodes), 3)
    # b loses the beat that carries a's new view (a busy connection drops it).
    changed = fn w, node ->
      if node == a, do: Map.put(view_of(w, node), :extra@x, :reachable), else: view_of(w, node)
    end

    w = %{w | cut: MapSet.new([{a, b}])}
    w = step(w, changed)
    refute view_at(w, b, a)[:extra@x]
    # Heal: the next plain beat carries a newer cv than b holds, b pulls.
    w = %{w | cut: MapSet.new()}
    w = step(w, changed)
    assert view_at(w, b, a)[:extra@x] == :reachable
    assert view_at(w, c, a)[:extra@x] == :reachable
  end

  test "a node cut from another keeps its row fresh through the others, and its view crosses the cut" do
    [a, b, c, d] = nodes = names(4)
    w = rounds(world(nodes), 3)
    w = %{w | cut: MapSet.new([{a, b}, {b, a}])}

    # Every interval after the cut, a still holds b's view fresh (relayed by
    # c and d), and b's view (a unreachable) is there within two intervals.
    w =
      Enum.reduce(1..10, w, fn i, w ->
        w = step(w, &view_of/2)
        assert fresh?(w, a, b), "b's row went stale at a in interval #{i}"
        assert fresh?(w, b, a)
        w
      end)

    assert view_at(w, a, b)[a] == :unreachable
    assert view_at(w, b, a)[b] == :unreachable
    assert view_at(w, c, b)[a] == :unreachable
    assert view_at(w, d, a)[b] == :unreachable
    # Not a flood: per interval, beats plus a few relays.
    w = %{w | sent: 0}
    w = rounds(w, 10)
    assert w.sent <= 10 * (4 * 3 + 2 * 2 * 2)
  end

  test "a frozen node's row goes stale everywhere: nobody relays what it said last" do
    [a, b, c] = nodes = names(3)
    w = rounds(world(nodes), 3)
    w = %{w | frozen: MapSet.new([c])}
    w = rounds(w, 3)
    refute fresh?(w, a, c)
    refute fresh?(w, b, c)
    assert fresh?(w, a, b)
  end

  test "a node that forgot a peer at its nodedown gets it back from a node that still hears it" do
    [a, _b, c] = nodes = names(3)
    w = rounds(world(nodes), 3)
    # a and c no longer talk (cut, then Erlang's nodedown at a).
    w = %{w | cut: MapSet.new([{a, c}, {c, a}])}
    w = put_in(w.g[a], Gossip.forget(w.g[a], c))
    w = rounds(w, 3)
    assert fresh?(w, a, c)
    assert view_at(w, a, c)[a] == :unreachable
  end

  test "a one-way cut: the deaf side keeps the other's row through relays" do
    [a, b, c] = nodes = names(3)
    w = rounds(world(nodes), 3)
    # a no longer hears b; b still hears a.
    w = %{w | cut: MapSet.new([{b, a}])}

    w =
      Enum.reduce(1..6, w, fn _, w ->
        w = step(w, &view_of/2)
        assert fresh?(w, a, b)
        w
      end)

    assert view_at(w, a, a)[b] == :unreachable
    assert view_at(w, c, a)[b] == :unreachable
    assert view_at(w, b, b)[a] == :reachable
  end

  test "malformed messages change nothing and answer nothing" do
    g = Gossip.new(:a@x, @interval, 1)
    assert Gossip.beat(g, {:cs_hb, "a", 1, 1, nil, [], {0, 0}}, 0) == {g, []}
    assert Gossip.beat(g, {:cs_hb, :b@x, 1, 1, nil, :bad, :bad}, 0) |> elem(0) |> is_map()
    assert Gossip.relay(g, [:junk, {:b@x, "1", 1, %{}}], 0) == g
    assert Gossip.relay(g, :junk, 0) == g
    assert Gossip.sync_reply(g, :junk, 0) == {:cs_relay, :a@x, []}
  end
end
