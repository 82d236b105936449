defmodule ClusterScope.Cluster.HeartbeatTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Cluster.Heartbeat

  test "views nobody refreshed for long are dropped; this node's own is kept" do
    now = 100_000
    view = fn at -> %{version: 1, at_ms: at, view: %{}} end

    views = %{
      node() => view.(0),
      :"fresh@127.0.0.9" => view.(now - 500),
      :"stale_but_recent@127.0.0.9" => view.(now - 59_000),
      :"gone@127.0.0.9" => view.(now - 61_000)
    }

    assert views |> Heartbeat.prune(now, 60_000) |> Map.keys() |> Enum.sort() ==
             Enum.sort([node(), :"fresh@127.0.0.9", :"stale_but_recent@127.0.0.9"])
  end

  test "a burst of queued beats is handled in one run and tells the listener once, without the timer" do
    alias ClusterScope.Cluster.Gossip

    peers = [:"a@127.0.0.9", :"b@127.0.0.9", :"c@127.0.0.9"]
    # On the wire a beat carries the sender's protocol pair (ClusterScope.Protocol).
    beat = fn peer ->
      {:cs_hb, ClusterScope.Protocol.own(), peer, 1_000, 1_000, %{peer => :reachable}, [], {0, 0}}
    end

    fallback = Process.send_after(self(), :flush_views, 60_000)

    state = %{
      detectors: nil,
      interval: 200,
      threshold: 8.0,
      gossip: Gossip.new(node(), 200, 1_000),
      reset_after_ms: 800,
      flush: fallback,
      awaiting: length(peers),
      phis: %{},
      listener: self()
    }

    # The other two beats of the burst are already queued behind the first.
    [first | queued] = Enum.map(peers, beat)
    Enum.each(queued, &send(self(), &1))

    assert {:noreply, state} = Heartbeat.handle_info(first, state)

    # Every beat was heard (their views are in), none is left in the
    # mailbox, and the listener got the views once, at once.
    assert Enum.all?(peers, &Map.has_key?(state.gossip.views, &1))
    refute_received {:cs_hb, _, _, _, _, _, _, _}
    assert_received {:heartbeat_views, views, _phis, _now}
    assert Enum.all?(peers, &Map.has_key?(views, &1))
    refute_received {:heartbeat_views, _, _, _}
    assert state.flush == nil and state.awaiting == 0
    assert Process.read_timer(fallback) == false
  end

  test "beats heard before the tick count for it" do
    alias ClusterScope.Cluster.Gossip

    state = %{
      detectors: nil,
      interval: 200,
      threshold: 8.0,
      gossip: Gossip.new(node(), 200, 1_000),
      reset_after_ms: 800,
      flush: nil,
      awaiting: 0,
      phis: %{},
      listener: self()
    }

    # No tick yet and no view changed: the beat is counted, the listener
    # is not told.
    assert {:noreply, state} =
             Heartbeat.handle_info(
               {:cs_hb, ClusterScope.Protocol.own(), :"a@127.0.0.9", 1_000, 1_000, nil, [],
                {0, 0}},
               state
             )

    assert state.awaiting == -1
    refute_received {:heartbeat_views, _, _, _}
  end

  test "a node named after its start sees itself under its name: the gossip starts afresh" do
    alias ClusterScope.Cluster.Gossip

    # What a node that became distributed after ClusterScope started had:
    # gossip keyed by its old name (it saw itself alone, cut from everyone).
    state = %{
      detectors: nil,
      interval: 200,
      threshold: 8.0,
      gossip: Gossip.new(:nonode@nohost, 200, 1_000),
      reset_after_ms: 800,
      flush: nil,
      awaiting: 0,
      phis: %{},
      listener: self()
    }

    assert {:noreply, state} = Heartbeat.handle_info(:tick, state)
    assert state.gossip.self == node()
    assert Map.keys(state.gossip.views) == [node()]
    assert_receive {:heartbeat_views, views, _phis, _now}, 1_000
    refute Map.has_key?(views, :nonode@nohost)
  end
end
