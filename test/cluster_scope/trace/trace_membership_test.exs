defmodule ClusterScope.Trace.MembershipTest do
  # R10.5: a session on all nodes follows the membership: a node that joins
  # while it runs gets a tracer, and its calls are traced; a session on
  # named nodes does not grow.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 180_000

  defp await(fun, timeout \\ 20_000),
    do: Cluster.poll(System.monotonic_time(:millisecond) + timeout, fun)

  test "a node that joins a running all-nodes session is traced; a named-nodes session stays" do
    [a, b] = Cluster.start(2)

    {:ok, all} =
      Cluster.call(
        a,
        ClusterScope,
        :run,
        [
          "trace_process",
          %{
            "module" => "TestApp.Work",
            "function" => "step",
            "arity" => "1",
            "duration_ms" => 120_000
          }
        ],
        30_000
      )

    {:ok, named} =
      Cluster.call(
        a,
        ClusterScope,
        :run,
        [
          "trace_process",
          %{
            "module" => "TestApp.Work",
            "function" => "drive",
            "arity" => "1",
            "nodes" => [Atom.to_string(b.node)],
            "duration_ms" => 120_000
          }
        ],
        30_000
      )

    {:ok, [c]} =
      LocalCluster.start_peers(1,
        aliases: false,
        connection: :standard_io,
        link: false,
        connect: false
      )

    on_exit(fn -> Cluster.cleanup([c]) end)
    # To both (global would cut a link that meshes only half the cluster).
    assert Cluster.call(c, :net_kernel, :connect_node, [a.node])
    assert Cluster.call(c, :net_kernel, :connect_node, [b.node])

    assert await(fn ->
             {:ok, s} = Cluster.call(a, ClusterScope.Trace, :get, [all.id])
             Map.has_key?(s.per_node, c.node)
           end),
           "no tracer started on the joining node"

    Cluster.call(c, TestApp.Work, :drive, [5])

    assert await(fn ->
             {:ok, %{events: events}} =
               Cluster.call(a, ClusterScope.Trace, :events, [all.id, nil, 1000], 30_000)

             Enum.any?(events, &(&1.node == Atom.to_string(c.node)))
           end),
           "the joining node's calls were not traced"

    {:ok, s} = Cluster.call(a, ClusterScope.Trace, :get, [named.id])
    refute Map.has_key?(s.per_node, c.node)
  end
end
