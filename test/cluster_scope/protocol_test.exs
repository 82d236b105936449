defmodule ClusterScope.ProtocolTest do
  # The version rules and the node-side door, on this node; a real peer of
  # another version is in test/cluster_scope/cluster/mixed_versions_test.exs.
  use ExUnit.Case, async: false

  alias ClusterScope.{Fanout, Protocol}

  test "the version is the native core's" do
    case ClusterScope.Native.build_info() do
      %{protocol_version: v} -> assert v == Protocol.version()
      {:error, :native_unavailable} -> :ok
    end

    info = ClusterScope.build_info()
    assert info.protocol_version == Protocol.version()
    assert info.min_compatible_protocol == Protocol.min_compatible()
  end

  test "speak: our version to a newer peer that understands it, its own to an older one we do" do
    assert Protocol.speak({2, 2}, {2, 2}) == 2
    # A newer peer that still understands 2.
    assert Protocol.speak({3, 2}, {2, 2}) == 2
    # We are newer and understand the older peer.
    assert Protocol.speak({2, 2}, {3, 2}) == 2
    # Neither understands the other.
    assert Protocol.speak({3, 3}, {2, 2}) == nil
    assert Protocol.speak({1, 1}, {2, 2}) == nil
  end

  test "speak is symmetric: two nodes always agree on whether they can talk" do
    versions = for v <- 1..5, min <- 1..v, do: {v, min}

    for a <- versions, b <- versions do
      assert Protocol.speak(a, b) == nil == (Protocol.speak(b, a) == nil), inspect({a, b})
    end
  end

  test "the door serves a version it understands and refuses another with its own" do
    assert Protocol.serve(Protocol.version(), Kernel, :+, [1, 2]) == 3

    assert_raise ErlangError, ~r/cluster_scope_protocol_mismatch/, fn ->
      Protocol.serve(Protocol.version() + 1, Kernel, :+, [1, 2])
    end

    refute Protocol.accepts?(:not_a_version)
    refute Protocol.accepts?(Protocol.min_compatible() - 1)
  end

  test "the compatible subset goes out as it is; ClusterScope's own calls in the envelope" do
    assert Protocol.portable?(ClusterScope, :build_info, [])
    assert Protocol.portable?(:erlang, :list_to_pid, ['<0.1.0>'])

    assert Protocol.portable?(ClusterScope.Agent.Processes.Rows, :stream_v1, [
             self(),
             make_ref(),
             1
           ])

    assert Protocol.portable?(ClusterScope.NodeViews.Ets.Local, :tables_v1, [%{}])
    assert Protocol.portable?(ClusterScope.NodeViews.Ports.Local, :ports_v12, [%{}])
    refute Protocol.portable?(ClusterScope.NodeViews.Ets.Local, :tables_v, [%{}])
    refute Protocol.portable?(ClusterScope.NodeViews.Ets.Local, :tables_vx, [%{}])
    refute Protocol.portable?(ClusterScope.Agent, :resources, [])
    refute Protocol.portable?(ClusterScope, :run, ["x", %{}])
  end

  test "a peer known to be mismatched is not called: a version_mismatch node error naming both" do
    fake = :"mismatched_#{System.unique_integer([:positive])}@127.0.0.1"
    :ok = Protocol.note_peer(fake, {9, 9})
    assert Protocol.status(fake) == {:mismatch, {9, 9}}

    {[], [error]} = Fanout.multicall([fake], ClusterScope.Agent, :resources, [], 500)
    assert error.status == :version_mismatch
    assert error.reason =~ "protocol 9"
    assert error.reason =~ "speaks #{Protocol.version()}"

    # rpc/5 too, and describe/2 turns it into the same node error.
    assert {:error, reason} = Fanout.rpc(fake, ClusterScope.Agent, :resources, [], 500)
    assert Fanout.describe(fake, reason).status == :version_mismatch
  end

  test "the test-only override changes what this node reports and what its door accepts" do
    Protocol.put_test_version(7)
    on_exit(fn -> Protocol.put_test_version(nil) end)

    assert ClusterScope.build_info().protocol_version == 7
    assert Protocol.own() == {7, 7}
    assert Protocol.serve(7, Kernel, :+, [1, 1]) == 2
    assert_raise ErlangError, ~r/\{7, 7\}/, fn -> Protocol.serve(2, Kernel, :+, [1, 1]) end

    Protocol.put_test_version(nil)
    assert ClusterScope.build_info().protocol_version == Protocol.version()
    assert Protocol.serve(Protocol.version(), Kernel, :+, [1, 1]) == 2
  end
end
