defmodule ClusterScope.Cluster.HeartbeatNameTest do
  # The test node becomes distributed after ClusterScope started (see
  # test_helper.exs): the heartbeat must speak under the node's real name,
  # not the `nonode@nohost` it had at start (peers never heard it, and it saw
  # itself on the minority side of a split).
  use ExUnit.Case, async: true

  test "the heartbeat's gossip carries this node's current name" do
    assert Node.alive?()
    interval = ClusterScope.Config.get(:heartbeat_interval_ms)
    Process.sleep(2 * interval)
    state = :sys.get_state(ClusterScope.Cluster.Heartbeat)
    assert state.gossip.self == node()
    refute Map.has_key?(state.gossip.views, :nonode@nohost)
  end
end
