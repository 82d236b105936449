defmodule ClusterScope.ModeTest do
  # Switching modes on a production node: refused unless allowed, and the
  # peers of local_cluster never join the host's real cluster.
  use ExUnit.Case, async: false

  alias ClusterScope.{LocalCluster, Mode}
  alias ClusterScope.Test.{Cluster, ModeSwitch}

  @moduletag timeout: 120_000

  describe "by default (allow_mode_switch: false)" do
    setup do
      ModeSwitch.allow(false)
    end

    test "set_mode is forbidden, names the option, and the mode does not change" do
      before = Node.list()

      for mode <- ["simulated", "local_cluster"] do
        assert {:error, %ClusterScope.Error{code: :forbidden} = error} =
                 ClusterScope.run("set_mode", %{"mode" => mode, "nodes" => 2})

        assert error.message =~ "allow_mode_switch"
        assert error.details.option == "allow_mode_switch"
        assert ClusterScope.Error.http_status(error.code) == 403
        assert Mode.current() == :multi_node
      end

      assert {:error, {:forbidden, message}} = Mode.set(:simulated, nodes: 2)
      assert message =~ "allow_mode_switch"
      assert Mode.current() == :multi_node
      assert Node.list() == before
      {:ok, topology} = ClusterScope.topology()
      refute Enum.any?(topology.nodes, & &1.simulated)
    end

    test "going back to the real cluster is always allowed" do
      assert {:ok, %{mode: :multi_node, nodes: []}} =
               ClusterScope.run("set_mode", %{"mode" => "multi_node"})
    end
  end

  describe "with allow_mode_switch: true" do
    setup do
      ModeSwitch.allow(true)
    end

    test "set_mode switches" do
      assert {:ok, %{mode: :simulated, nodes: [_, _]}} =
               ClusterScope.run("set_mode", %{"mode" => "simulated", "nodes" => 2})

      assert Mode.current() == :simulated
      assert {:ok, %{mode: :multi_node}} = ClusterScope.run("set_mode", %{"mode" => "multi_node"})
      assert Mode.current() == :multi_node
    end

    @tag :cluster
    test "local_cluster peers have a cookie of their own and never join the host's cluster" do
      # A node of the host's real cluster, visibly connected to this node.
      [real] = Cluster.start(1, observer: :visible)
      assert real.node in Node.list()

      {:ok, %{mode: :local_cluster, nodes: peers}} = Mode.set(:local_cluster, nodes: 2)
      assert length(peers) == 2
      own_cookie = Node.get_cookie()

      # Give global time to mesh what it would mesh.
      Process.sleep(2_000)

      for p <- peers do
        # This node still reaches them, with the cookie set for them.
        assert p in Node.list()
        peer_cookie = :erpc.call(p, Node, :get_cookie, [])
        assert peer_cookie != own_cookie
        assert :erlang.get_cookie(p) == peer_cookie
        assert {:ok, [[~c"false"]]} = :erpc.call(p, :init, :get_argument, [:connect_all])

        # They see each other and this node, never the host's other nodes.
        seen = :erpc.call(p, Node, :list, [])
        assert node() in seen
        assert Enum.all?(peers -- [p], &(&1 in seen))
        refute real.node in seen
        refute p in Cluster.call(real, Node, :list, [])

        # Neither side can connect to the other: the cookies differ.
        refute Cluster.call(real, :net_kernel, :connect_node, [p], 10_000) == true
        refute :erpc.call(p, :net_kernel, :connect_node, [real.node], 10_000) == true
      end

      # Every peer shares the mode's cookie, and a new switch makes a new one.
      [c1, c2] = Enum.map(peers, &:erpc.call(&1, Node, :get_cookie, []))
      assert c1 == c2
      {:ok, %{nodes: [next | _]}} = Mode.set(:local_cluster, nodes: 1)
      refute :erpc.call(next, Node, :get_cookie, []) in [c1, own_cookie]
    end
  end

  describe "LocalCluster defaults (the test harness)" do
    @describetag :cluster

    test "a peer started without options shares this node's cookie and connect_all" do
      {:ok, peer} = LocalCluster.start_peer(link: true)
      on_exit(fn -> LocalCluster.stop(peer) end)
      assert LocalCluster.call(peer, Node, :get_cookie, []) == Node.get_cookie()
      assert LocalCluster.call(peer, :init, :get_argument, [:connect_all]) == :error
    end
  end

  test "random cookies are safe on a command line: never a leading -, one per call" do
    # A base64 cookie starting with - was read by erl as another flag.
    cookies = for _ <- 1..2_000, do: Atom.to_string(LocalCluster.random_cookie())
    assert Enum.all?(cookies, &(&1 =~ ~r/\A[0-9a-f]{48}\z/))
    assert length(Enum.uniq(cookies)) == 2_000
  end
end
