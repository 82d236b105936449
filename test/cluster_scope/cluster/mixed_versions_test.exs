defmodule ClusterScope.Cluster.MixedVersionsTest do
  # A rolling deploy on real peers: one peer reports another protocol
  # version (ClusterScope.Protocol.put_test_version/2, the documented
  # test-only hook). It is served through the compatible subset (build
  # info, agentless process rows), never called in a format it does not
  # speak, never crashes a heartbeat, and never reads as a partition.
  use ExUnit.Case, async: false

  alias ClusterScope.{Fanout, Protocol}
  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 240_000

  defp run(peer, op, params \\ %{}),
    do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)

  defp healthy(peers) do
    n = length(peers)

    for p <- peers do
      Cluster.await_run(
        p,
        "partition_status",
        &(&1.classification.status == :healthy and map_size(&1.heartbeat.peers) == n - 1),
        15_000
      )
    end
  end

  defp mismatched_on(peer) do
    {:ok, topology} = run(peer, "cluster_topology")
    topology.protocol.mismatched
  end

  test "a peer of a newer, incompatible version is served through the compatible subset" do
    here = Protocol.version()
    newer = here + 1
    [a, b, v] = peers = Cluster.start(3)
    healthy(peers)
    heartbeat_a = Cluster.call(a, Process, :whereis, [Heartbeat])
    heartbeat_v = Cluster.call(v, Process, :whereis, [Heartbeat])

    # v now speaks a newer version and understands only that one.
    :ok = Cluster.call(v, Protocol, :put_test_version, [newer])

    # a and b learn it from v's beats: the cluster view shows the mismatch.
    deadline = System.monotonic_time(:millisecond) + 10_000

    assert Cluster.poll(deadline, fn ->
             match?(
               [%{node: n, version: ^newer, compatible: false}] when n == v.node,
               mismatched_on(a)
             ) and
               match?([%{node: n}] when n == v.node, mismatched_on(b))
           end)

    # v is left out like a node without ClusterScope, not taken for a
    # silent one: the classification stays healthy and has no phi for v.
    status =
      Cluster.await_run(
        a,
        "partition_status",
        &(&1.classification.status == :healthy and map_size(&1.heartbeat.peers) == 1),
        10_000
      )

    assert Map.keys(status.heartbeat.peers) == [b.node]

    # Build info (the compatible subset) shows each node's version.
    assert {:ok, info} = run(a, "node_build_info", %{"node" => Atom.to_string(v.node)})
    assert info.protocol_version == newer
    assert info.protocol == %{here: here, compatible: false}
    assert {:ok, info} = run(a, "node_build_info", %{"node" => Atom.to_string(b.node)})
    assert info.protocol_version == here and info.protocol.compatible

    # An agent call to v is not made: a node error naming both versions.
    assert {:error, error} = run(a, "node_resources", %{"node" => Atom.to_string(v.node)})
    assert error.code == :node_unavailable
    assert error.message =~ "speaks ClusterScope protocol #{newer}"

    # Cluster-wide: v is listed with its reason, the others answer.
    assert {:ok, alerts} = run(a, "cluster_alerts")
    assert [%{node: n, status: :version_mismatch}] = alerts.node_errors
    assert n == v.node

    # Processes: v's are read agentless, with the others'.
    assert {:ok, list} = run(a, "process_list", %{"limit" => 500})
    assert v.node in list.agentless
    assert Enum.sort(list.nodes) == Enum.sort([a.node, b.node, v.node])

    assert Enum.any?(
             list.processes,
             &(to_string(&1.node) == Atom.to_string(v.node) and &1.agentless)
           )

    assert list.node_errors == []

    # The doctor names it as another version, not as a node without ClusterScope.
    assert {:ok, doctor} = run(a, "cluster_doctor")
    ids = Enum.map(doctor.findings, & &1.id)
    assert :version_mismatch in ids
    refute :clusterscope_missing in ids
    finding = Enum.find(doctor.findings, &(&1.id == :version_mismatch))
    assert finding.message =~ "#{v.node} runs ClusterScope"
    assert finding.message =~ "(protocol #{newer})"

    # v's own door refuses a caller that does not know its version yet
    # (the test node: never heard its beats).
    assert {:error, error} = Fanout.call(v.node, ClusterScope.Agent, :resources, [], 5_000)
    assert error.status == :version_mismatch
    assert Protocol.peer(v.node) == {newer, newer}

    # And v does not call a's agent either.
    assert {:error, %{status: :version_mismatch}} =
             Cluster.call(v, Fanout, :call, [a.node, ClusterScope.Agent, :resources, []])

    # Beats of the old formats are logged and ignored: the heartbeat lives.
    old = :"cs_old_release@127.0.0.1"
    older = :"cs_unversioned_release@127.0.0.1"
    Cluster.call(a, :erlang, :send, [Heartbeat, {:cs_heartbeat, old, 12, %{views: %{}}}])
    Cluster.call(a, :erlang, :send, [Heartbeat, {:cs_hb, older, 1, 1, nil, [], {0, 0}}])
    Cluster.call(a, :erlang, :send, [Heartbeat, {:cs_hb, :garbage, b.node, 1, 1, nil, [], 0}])
    Cluster.call(a, Heartbeat, :snapshot, [])
    assert Cluster.call(a, Protocol, :peer, [old]) == {1, 1}
    assert Cluster.call(a, Protocol, :peer, [older]) == {1, 1}
    assert Cluster.call(a, Process, :whereis, [Heartbeat]) == heartbeat_a
    assert Cluster.call(v, Process, :whereis, [Heartbeat]) == heartbeat_v

    # Back to the same version: v is an agent again everywhere.
    :ok = Cluster.call(v, Protocol, :put_test_version, [nil])
    healthy(peers)
    assert mismatched_on(a) == []
    assert {:ok, _} = run(a, "node_resources", %{"node" => Atom.to_string(v.node)})
  end

  test "a newer peer that still understands this version is called in this version" do
    here = Protocol.version()
    newer = here + 1
    [a, b, v] = peers = Cluster.start(3)
    healthy(peers)
    :ok = Cluster.call(v, Protocol, :put_test_version, [newer, here])

    deadline = System.monotonic_time(:millisecond) + 10_000

    assert Cluster.poll(deadline, fn ->
             {:ok, t} = run(a, "cluster_topology")
             Enum.any?(t.protocol.peers, &(&1.node == v.node and &1.version == newer))
           end)

    assert mismatched_on(a) == []
    assert {:ok, info} = run(a, "node_build_info", %{"node" => Atom.to_string(v.node)})
    assert info.protocol_version == newer and info.protocol.compatible

    # Served by its agent, both ways, and the cluster stays whole.
    assert {:ok, _} = run(a, "node_resources", %{"node" => Atom.to_string(v.node)})
    assert {:ok, _} = run(v, "node_resources", %{"node" => Atom.to_string(a.node)})
    assert {:ok, list} = run(a, "process_list", %{"limit" => 10})
    assert list.agentless == []
    healthy([a, b, v])
  end
end
