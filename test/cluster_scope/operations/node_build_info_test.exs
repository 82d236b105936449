defmodule ClusterScope.Operations.NodeBuildInfoTest do
  # The operation runs on the node it names: asked here about a peer, it
  # answers with the peer's build; a peer that does not answer is
  # node_unavailable with its cause, within the node timeout.
  use ExUnit.Case, async: false

  alias ClusterScope.{Error, LocalCluster}
  alias ClusterScope.Test.Cluster

  @moduletag :cluster

  setup do
    # Controlled over standard I/O, so that freezing it cannot stop the
    # control connection the test needs to resume and stop it.
    {:ok, peer} = LocalCluster.start_peer(link: true, connection: :standard_io)
    true = Node.connect(peer.node)

    on_exit(fn ->
      Cluster.resume(peer)
      LocalCluster.stop(peer)
      Cluster.forget([peer])
    end)

    %{peer: peer}
  end

  test "asked here about a peer, the peer answers with its own build", %{peer: peer} do
    assert {:ok, info, meta} =
             ClusterScope.Operation.Runner.run("node_build_info", %{
               "node" => Atom.to_string(peer.node)
             })

    assert info.node == peer.node
    assert meta.node == node()
    assert info.native.core_version == ClusterScope.Native.build_info().core_version
  end

  test "a frozen peer is node_unavailable, named, within the node timeout", %{peer: peer} do
    :ok = Cluster.freeze(peer)
    started = System.monotonic_time(:millisecond)

    assert {:error, %Error{code: :node_unavailable} = error} =
             ClusterScope.run("node_build_info", %{node: peer.node})

    assert error.message =~ Atom.to_string(peer.node)
    assert error.remediation != []
    # node_timeout_ms (5 s) plus scheduling: generous, for correctness only.
    assert System.monotonic_time(:millisecond) - started < 8_000
  end
end
