defmodule ClusterScope.Cluster.MembershipTest do
  # Joins and leaves on real peers, seen in the topology and by subscribers.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  test "a joining and a leaving node show in the topology and in subscriptions" do
    [a, b] = Cluster.start(2)

    data = Cluster.await_run(a, "cluster_topology", &(length(&1.agents) == 2))
    assert Enum.sort(data.agents) == Enum.sort([a.node, b.node])

    # Health is asked of the nodes seen as up: b is an agent before a's
    # state has classified it up, so wait for the healthy cluster first.
    assert %{status: :healthy} =
             Cluster.await_run(a, "cluster_topology", &(&1.classification.status == :healthy)).classification

    {:ok, with_health} =
      Cluster.call(a, ClusterScope, :run, ["cluster_topology", %{include_health: true}])

    assert Enum.sort(Map.keys(with_health.health)) == Enum.sort([a.node, b.node])
    assert %{status: _, alerts: _} = with_health.health[b.node]

    mark = Cluster.last_cluster_event(a)

    {:ok, [c]} =
      LocalCluster.start_peers(1,
        aliases: false,
        connection: :standard_io,
        link: false,
        connect: false
      )

    on_exit(fn -> Cluster.cleanup([c]) end)
    assert Cluster.call(c, :net_kernel, :connect_node, [a.node])

    up = Cluster.await_cluster_event(a, &(&1.type == :up and &1.node == c.node), after: mark)
    assert up.cause == "connected"
    topology = Cluster.await_run(a, "cluster_topology", &(c.node in &1.agents))
    info = Enum.find(topology.nodes, &(&1.node == c.node))
    assert info.status == :up
    # Metadata is fetched from the node itself.
    assert Cluster.await_run(a, "cluster_topology", fn t ->
             Enum.find(t.nodes, &(&1.node == c.node)).metadata[:otp_release] != nil
           end)

    mark = Cluster.last_cluster_event(a)
    :ok = LocalCluster.stop(c)
    down = Cluster.await_cluster_event(a, &(&1.type == :down and &1.node == c.node), after: mark)
    assert down.details.reason == :connection_closed
    assert down.cause =~ "connection closed"

    {:ok, %{events: events}} =
      Cluster.call(a, ClusterScope, :run, ["cluster_events", %{since: mark}])

    assert Enum.any?(events, &(&1.type == :down and &1.node == c.node))

    {:ok, info} =
      Cluster.call(a, ClusterScope, :run, ["node_info", %{node: Atom.to_string(c.node)}])

    assert info.status == :down and info.down_reason == :connection_closed
    assert %{error: %{status: :down}} = info.live
  end

  test "a killed node is reported down with its cause; the others keep answering" do
    [a, b, c] = Cluster.start(3)
    Cluster.await_run(a, "cluster_topology", &(length(&1.agents) == 3))
    mark = Cluster.last_cluster_event(a)
    :ok = Cluster.kill(c)

    event = Cluster.await_cluster_event(a, &(&1.type == :down and &1.node == c.node), after: mark)
    assert event.details.reason == :connection_closed

    # Its detector is dropped: a node that comes back starts a fresh history
    # instead of one polluted by the gap.
    deadline = System.monotonic_time(:millisecond) + 3_000

    assert Cluster.poll(deadline, fn ->
             snapshot = Cluster.call(a, ClusterScope.Cluster.Heartbeat, :snapshot, [])
             not Map.has_key?(snapshot.phis, c.node)
           end)

    {:ok, health} = Cluster.call(b, ClusterScope, :run, ["cluster_health", %{}])
    assert health.status in [:degraded, :healthy]
    assert {:ok, %{node: node}} = Cluster.call(a, ClusterScope, :node_build_info, [b.node])
    assert node == b.node
  end
end
