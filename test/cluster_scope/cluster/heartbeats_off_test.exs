defmodule ClusterScope.Cluster.HeartbeatsOffTest do
  # features: [heartbeats: false] on real peers: no heartbeat traffic, the
  # cluster's picture from Erlang's connections, nodedowns still seen, and
  # the doctor's warning about the tick.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  test "no beats are exchanged; members and nodedowns still show; the doctor warns" do
    [a, b, c] = Cluster.start(3, app_env: [{:cluster_scope, :features, [heartbeats: false]}])

    topology =
      Cluster.await_run(
        a,
        "cluster_topology",
        &(length(&1.agents) == 3 and Enum.count(&1.nodes, fn n -> n.status == :up end) == 3 and
            &1.classification.status == :healthy),
        15_000
      )

    assert Enum.sort(topology.agents) == Enum.sort([a.node, b.node, c.node])

    # Two seconds (10 intervals) later, b has heard no beat from anyone: its
    # gossip knows no other node's view.
    Process.sleep(2_000)
    heartbeat = Cluster.call(b, :sys, :get_state, [ClusterScope.Cluster.Heartbeat])
    assert heartbeat.beats? == false
    assert Map.keys(heartbeat.gossip.views) -- [b.node] == []

    mark = Cluster.last_cluster_event(a)
    Cluster.kill(c)
    down = Cluster.await_cluster_event(a, &(&1.type == :down and &1.node == c.node), after: mark)
    assert down.node == c.node

    # The harness's tick is 3 s: no warning; at OTP's default, the warning.
    {:ok, doctor} = Cluster.call(a, ClusterScope, :run, ["cluster_doctor", %{}], 15_000)
    refute Enum.any?(doctor.findings, &(&1.id == :heartbeats_off_default_ticktime))

    Cluster.call(a, :net_kernel, :set_net_ticktime, [60, 1])
    {:ok, doctor} = Cluster.call(a, ClusterScope, :run, ["cluster_doctor", %{}], 15_000)
    assert [f] = for(f <- doctor.findings, f.id == :heartbeats_off_default_ticktime, do: f)
    assert f.node == a.node and f.message =~ "45-75 s"
  end
end
