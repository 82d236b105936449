defmodule ClusterScope.Test.ClusterHarnessTest do
  # Each capability of the harness, observed on real nodes through
  # :net_kernel.monitor_nodes/2 (in this test process, or in the NodeWatcher
  # running on a peer and read back over the peer's standard I/O).
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  setup do
    :ok = :net_kernel.monitor_nodes(true, [{:node_type, :all}, :nodedown_reason])
    on_exit(fn -> :net_kernel.monitor_nodes(false, [{:node_type, :all}, :nodedown_reason]) end)
    :ok
  end

  test "start: peers come up on their own loopback addresses with ClusterScope running" do
    [a, b] = peers = Cluster.start(2)

    for peer <- peers do
      assert_receive {:nodeup, node, _}, 5_000
      assert node in [a.node, b.node]
      assert Cluster.call(peer, ClusterScope.Native, :loaded?, [])
      assert Cluster.call(peer, Node, :self, []) == peer.node
    end

    {o1, o2, o3, o4} = Cluster.alias_base()
    assert a.ip == {o1, o2, o3, o4 + 1} and b.ip == {o1, o2, o3, o4 + 2}
    # The peers see each other too: the mesh is formed.
    assert b.node in Cluster.call(a, Node, :list, [])
    assert {:nodeup, _, _, _} = Cluster.await_event(a, :nodeup, b)

    # Every distribution connection of a peer, incoming or outgoing, uses the
    # peer's own address: that is what makes each link cuttable by address.
    for peer <- peers do
      local_ips = Cluster.call(peer, ClusterScope.Test.NodeWatcher, :dist_local_ips, [])
      assert length(local_ips) >= 2
      assert Enum.all?(local_ips, fn {_node, ip} -> ip == peer.ip end), inspect(local_ips)
    end
  end

  test "stop: a graceful stop closes the connection" do
    [a] = Cluster.start(1)
    assert_receive {:nodeup, node, _}, 5_000
    assert node == a.node

    :ok = Cluster.stop(a)
    assert_receive {:nodedown, ^node, info}, 5_000
    assert info[:nodedown_reason] == :connection_closed
  end

  test "kill: SIGKILL ends the OS process and the node goes down" do
    [a, b] = Cluster.start(2)
    mark = Cluster.mark(b)
    :ok = Cluster.kill(a)

    node = a.node
    assert_receive {:nodedown, ^node, _}, 5_000
    assert {:nodedown, _, _, _} = Cluster.await_event(b, :nodedown, a, after: mark)
    deadline = System.monotonic_time(:millisecond) + 3_000

    assert Cluster.poll(deadline, fn -> not File.exists?("/proc/#{a.os_pid}") end),
           "the OS process should be gone"
  end

  test "freeze and resume: a stopped VM misses its ticks, then answers again" do
    [a, b] = Cluster.start(2)
    mark = Cluster.mark(b)
    :ok = Cluster.freeze(a)

    # While frozen the peer cannot answer, even over standard I/O.
    assert catch_exit(Cluster.call(a, :erlang, :node, [], 300))

    assert {:nodedown, _, %{nodedown_reason: reason}, _} =
             Cluster.await_event(b, :nodedown, a, after: mark)

    assert reason == :net_tick_timeout

    mark = Cluster.mark(b)
    :ok = Cluster.resume(a)
    assert Cluster.call(a, :erlang, :node, [], 5_000) == a.node
    assert Cluster.connect(b, a)
    assert {:nodeup, _, _, _} = Cluster.await_event(b, :nodeup, a, after: mark)
  end

  describe "partitions" do
    @describetag :chaos

    test "cut both ways: each side sees the other go down; heal lets them reconnect" do
      [a, b] = Cluster.start(2)
      {ma, mb} = {Cluster.mark(a), Cluster.mark(b)}

      :ok = Cluster.cut(a, b)
      assert {:nodedown, _, _, _} = Cluster.await_event(a, :nodedown, b, after: ma)
      assert {:nodedown, _, _, _} = Cluster.await_event(b, :nodedown, a, after: mb)
      # While cut, a connection attempt fails.
      refute Cluster.connect(a, b, 0)

      :ok = Cluster.heal(a, b)
      {ma, mb} = {Cluster.mark(a), Cluster.mark(b)}
      assert Cluster.connect(a, b)
      assert {:nodeup, _, _, _} = Cluster.await_event(a, :nodeup, b, after: ma)
      assert {:nodeup, _, _, _} = Cluster.await_event(b, :nodeup, a, after: mb)
    end

    test "cut one way: only traffic from b to a is dropped" do
      [a, b] = Cluster.start(2)
      ma = Cluster.mark(a)

      :ok = Cluster.cut(a, b, :one_way)

      # a stops hearing b, so a's tick timer expires.
      assert {:nodedown, _, %{nodedown_reason: :net_tick_timeout}, _} =
               Cluster.await_event(a, :nodedown, b, after: ma)

      # Datagrams show the direction: a -> b arrives, b -> a does not.
      assert udp_delivered?(a, b)
      refute udp_delivered?(b, a)

      :ok = Cluster.heal(a, b)
      assert udp_delivered?(b, a)
      {ma, mb} = {Cluster.mark(a), Cluster.mark(b)}
      assert Cluster.connect(a, b)
      assert {:nodeup, _, _, _} = Cluster.await_event(a, :nodeup, b, after: ma)
      # b saw the link go too (its side closed when a dropped it), and sees
      # it come back.
      assert {:nodeup, _, _, _} = Cluster.await_event(b, :nodeup, a, after: mb)
    end
  end

  # Sends a UDP datagram from `from`'s address to `to`'s address and reports
  # whether it arrived within 500 ms.
  defp udp_delivered?(from, to) do
    watcher = ClusterScope.Test.NodeWatcher
    {port, receiver} = Cluster.call(to, watcher, :udp_listen, [to.ip, 500])
    token = Base.encode16(:crypto.strong_rand_bytes(8))
    :ok = Cluster.call(from, watcher, :udp_send, [from.ip, to.ip, port, token])
    result = Cluster.call(to, watcher, :udp_result, [receiver], 15_000)
    match?({:ok, {_, _, ^token}}, result)
  end
end
