defmodule ClusterScope.AgentTest do
  # The agent room's door: what a node computes about itself, here and,
  # through ClusterScope.Fanout, on a real peer that answers about itself.
  use ExUnit.Case, async: false

  alias ClusterScope.{Agent, Fanout, Protocol}
  alias ClusterScope.Test.Cluster

  test "metadata and facts describe this node and share their common fields" do
    before_ms = System.system_time(:millisecond)
    metadata = Agent.metadata()
    facts = Agent.facts()

    assert metadata.otp_release == System.otp_release()
    assert metadata.cluster_scope_version == ClusterScope.version()

    assert Map.take(facts, [:otp_release, :cluster_scope_version]) ==
             Map.delete(metadata, :started_at_ms)

    # Started when the VM did: now minus its uptime (both read within a second).
    assert_in_delta metadata.started_at_ms + facts.uptime_ms, before_ms, 1_000
    assert facts.process_count > 0 and facts.process_count <= facts.process_limit
    assert Enum.sort(Map.keys(facts.memory_bytes)) == Enum.sort(Keyword.keys(:erlang.memory()))
    assert facts.memory_bytes.total > 0
    assert facts.schedulers == System.schedulers_online()
    assert facts.connected_nodes == Node.list()
  end

  test "resources is this node's monitor: latest sample, state, alerts and thresholds" do
    assert {:ok, resources} = Agent.resources()
    assert resources.node == node()
    assert resources.thresholds == ClusterScope.Health.thresholds()
    assert resources.status.interval_ms == ClusterScope.Health.status().interval_ms
  end

  test "ClusterScope.build_info/0 stays the portable entry point and is the agent's answer" do
    assert ClusterScope.build_info() == Agent.build_info()
    assert Agent.build_info().protocol_version == Protocol.version()
    assert Protocol.portable?(ClusterScope, :build_info, [])

    # The agent's own calls go in the version envelope.
    for fun <- [:metadata, :facts, :resources, :build_info],
        do: refute(Protocol.portable?(Agent, fun, []))
  end

  describe "on a real peer" do
    @describetag :cluster
    @describetag timeout: 120_000

    test "each call through Fanout answers about the peer itself" do
      [a, b] = Cluster.start(2)

      assert {:ok, metadata} = Fanout.call(a.node, Agent, :metadata, [], 10_000)
      assert {:ok, facts} = Fanout.call(a.node, Agent, :facts, [], 10_000)
      assert metadata.cluster_scope_version == ClusterScope.version()

      assert Map.take(facts, [:otp_release, :cluster_scope_version]) ==
               Map.delete(metadata, :started_at_ms)

      # The peer started after this VM, and is connected to b (not only to us).
      assert metadata.started_at_ms > Agent.metadata().started_at_ms
      assert b.node in facts.connected_nodes

      assert {:ok, {:ok, resources}} = Fanout.call(a.node, Agent, :resources, [], 10_000)
      assert resources.node == a.node

      assert {:ok, %{node: node}} = Fanout.call(a.node, ClusterScope, :build_info, [], 10_000)
      assert node == a.node
    end

    test "a peer of a protocol without the agent room refuses with a version mismatch, not undef" do
      [a, _b] = Cluster.start(2)

      # a now speaks the protocol of the builds before the agent room (2),
      # whose nodes have no ClusterScope.Agent: its door refuses us, and
      # the error names both versions.
      :ok = Cluster.call(a, Protocol, :put_test_version, [2])
      assert Protocol.speak({2, 2}) == nil

      assert {:error, error} = Fanout.call(a.node, Agent, :facts, [], 10_000)
      assert error.status == :version_mismatch
      assert error.reason =~ "speaks ClusterScope protocol 2"
      assert Protocol.peer(a.node) == {2, 2}

      # It is not called again, and build info (the compatible subset) still answers.
      assert {:error, %{status: :version_mismatch}} =
               Fanout.call(a.node, Agent, :metadata, [], 10_000)

      assert {:ok, %{protocol_version: 2}} =
               Fanout.call(a.node, ClusterScope, :build_info, [], 10_000)
    end
  end
end
