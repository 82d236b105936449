defmodule ClusterScope.Cluster.CausesTest do
  # Every nodedown gets a cause: libcluster's telemetry (when present) and
  # explicit disconnects are told apart from crashes.
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.State
  alias ClusterScope.LocalCluster

  @moduletag :cluster

  setup do
    ClusterScope.subscribe(:cluster)
    {:ok, peer} = LocalCluster.start_peer(link: true)
    on_exit(fn -> LocalCluster.stop(peer) end)
    node = peer.node
    assert_receive {:cluster_scope, :cluster, %{type: :up, node: ^node}}, 3_000
    %{peer: peer}
  end

  test "a libcluster disconnect is the cause of the nodedown that follows", %{peer: peer} do
    node = peer.node

    State.handle_libcluster(
      [:libcluster, :disconnect_node, :ok],
      %{duration: 1},
      %{node: node, topology: :gossip},
      nil
    )

    true = Node.disconnect(node)

    assert_receive {:cluster_scope, :cluster, %{type: :down, node: ^node} = event}, 3_000
    assert event.cause =~ "libcluster"
    assert event.details.attribution == :libcluster
  end

  test "an explicit disconnect without libcluster is said to be explicit", %{peer: peer} do
    node = peer.node
    true = Node.disconnect(node)
    assert_receive {:cluster_scope, :cluster, %{type: :down, node: ^node} = event}, 3_000
    assert event.details.reason == :disconnect
    assert event.cause =~ "disconnected explicitly"

    # Gone for good: forgotten at once, not kept as a down node.
    assert Enum.any?(State.topology().nodes, &(&1.node == node and &1.status == :down))
    assert State.forget(node) == :ok
    refute Enum.any?(State.topology().nodes, &(&1.node == node))
  end

  test "a connected node cannot be forgotten", %{peer: peer} do
    assert State.forget(peer.node) == {:error, :connected}
    assert Enum.any?(State.topology().nodes, &(&1.node == peer.node and &1.status == :up))
  end

  test "a reconnection before the cause of a disconnect is decided leaves the node up" do
    # Controlled over standard I/O: a peer controlled over distribution
    # stops when its connection goes.
    {:ok, peer} = LocalCluster.start_peer(link: true, connection: :standard_io)
    on_exit(fn -> LocalCluster.stop(peer) end)
    node = peer.node
    true = Node.connect(node)
    assert_receive {:cluster_scope, :cluster, %{type: :up, node: ^node}}, 3_000
    # The nodedown of a disconnect waits 100 ms for global's report. With
    # the state suspended, the nodeup is queued behind the nodedown before
    # that wait starts: it always comes first.
    :ok = :sys.suspend(State)
    true = Node.disconnect(node)
    # The peer may still be closing its side for a few ms.
    connected? = Enum.any?(1..500, fn _ -> Node.connect(node) or (Process.sleep(10) && false) end)
    :ok = :sys.resume(State)
    assert connected?

    assert_receive {:cluster_scope, :cluster, %{type: :down, node: ^node} = down}, 3_000
    assert_receive {:cluster_scope, :cluster, %{type: :up, node: ^node} = up}, 3_000
    assert down.id < up.id
    assert down.details.reason == :disconnect

    # Past the 100 ms the nodedown would have waited.
    Process.sleep(300)
    status = Enum.find(State.topology().nodes, &(&1.node == node)).status
    assert status == :up
    refute_received {:cluster_scope, :cluster, %{type: :down, node: ^node}}
  end

  test "libcluster's failed connects are one suspect event per node", %{peer: _peer} do
    meta = %{node: :"ghost@127.0.0.9", topology: :gossip, reason: :unreachable}

    for _ <- 1..3 do
      State.handle_libcluster([:libcluster, :connect_node, :error], %{duration: 1}, meta, nil)
    end

    assert_receive {:cluster_scope, :cluster,
                    %{type: :suspect, node: :"ghost@127.0.0.9"} = event},
                   3_000

    assert event.cause =~ "libcluster could not connect"
    assert event.details.attribution == :libcluster
    refute_receive {:cluster_scope, :cluster, %{type: :suspect, node: :"ghost@127.0.0.9"}}, 300
  end
end

defmodule ClusterScope.Cluster.GlobalWatcherTest do
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.GlobalWatcher

  test "global's OTP 25 report (node, what, node) marks the other node" do
    msg =
      {~c"'global' at node ~p ~s node ~p in order to prevent overlapping partitions",
       [node(), ~c"requested disconnect from", :"other@127.0.0.9"]}

    assert GlobalWatcher.log(%{msg: msg, level: :warning, meta: %{}}, %{}) == :ok
    # The cast is processed before this call returns its reply.
    _ = :sys.get_state(ClusterScope.Cluster.State)

    assert Map.has_key?(
             :sys.get_state(ClusterScope.Cluster.State).global_cuts,
             :"other@127.0.0.9"
           )
  end

  test "anything else is ignored, and nothing raises" do
    for msg <- [
          {:report, %{a: 1}},
          {:string, "hello"},
          {~c"~p", [1]},
          {~c"overlapping partitions ~p", ["x"]}
        ] do
      assert GlobalWatcher.log(%{msg: msg}, %{}) == :ok
    end

    assert GlobalWatcher.log(:garbage, %{}) == :ok
  end
end
