defmodule ClusterScope.Libcluster.AttributionTest do
  # Finding 5 of issue 12, with the real libcluster and :telemetry on real
  # peers: a disconnect made by a libcluster strategy is attributed to
  # libcluster whatever the order the host starts :cluster_scope and
  # :telemetry in, ClusterScope never makes :telemetry log "Failed to lookup
  # telemetry handlers", and the topology view shows the nodes a topology
  # expects but has not connected, with libcluster's last error.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.{LibclusterHost, ManualStrategy}
  alias ClusterScope.Test.Cluster, as: TestCluster

  @moduletag :cluster
  @moduletag :libcluster
  @moduletag timeout: 120_000

  setup do
    {:ok, [a, b]} =
      LocalCluster.start_peers(2,
        aliases: true,
        alias_base: TestCluster.alias_base(),
        connection: :standard_io,
        link: false,
        connect: false,
        apps: []
      )

    on_exit(fn -> TestCluster.cleanup([a, b]) end)

    # A host built as a release loads every module at boot: :telemetry is
    # loaded whether or not its application was started.
    {:module, :telemetry} = call(a, Code, :ensure_loaded, [:telemetry])
    :ok = call(a, LibclusterHost, :capture_logs, [])

    {o1, o2, o3, _} = TestCluster.alias_base()
    missing = :"cs_missing_#{System.unique_integer([:positive])}@#{o1}.#{o2}.#{o3}.250"

    topologies = [
      manual: [strategy: ManualStrategy, config: [hosts: [b.node]]],
      static: [strategy: Cluster.Strategy.Epmd, config: [hosts: [b.node, missing], timeout: 500]]
    ]

    %{a: a, b: b, missing: missing, topologies: topologies}
  end

  test "cluster_scope started before :telemetry and libcluster", ctx do
    %{a: a, b: b} = ctx
    {:ok, _} = call(a, :application, :ensure_all_started, [:cluster_scope])
    refute call(a, ClusterScope.Telemetry, :running?, [])
    assert call(a, ClusterScope.Cluster.Libcluster, :telemetry_status, []) == :waiting

    # ClusterScope's own events while :telemetry is loaded but not running
    # (a node up, here) emit nothing, so :telemetry logs nothing.
    true = call(a, :net_kernel, :connect_node, [b.node])
    await_status(a, b.node, :up)
    assert Enum.any?(call(a, ClusterScope.Cluster.State, :events, [0, 1_000]), &(&1.type == :up))

    {:ok, _} = call(a, :application, :ensure_all_started, [:telemetry])
    {:ok, _} = call(a, :application, :ensure_all_started, [:libcluster])
    start_libcluster(a, ctx.topologies)

    assert_attributed_to_libcluster(ctx)
  end

  test "libcluster and :telemetry started before cluster_scope", ctx do
    %{a: a} = ctx
    {:ok, _} = call(a, :application, :ensure_all_started, [:telemetry])
    {:ok, _} = call(a, :application, :ensure_all_started, [:libcluster])
    start_libcluster(a, ctx.topologies)
    {:ok, _} = call(a, :application, :ensure_all_started, [:cluster_scope])

    assert_attributed_to_libcluster(ctx)
  end

  defp start_libcluster(a, topologies) do
    :ok = call(a, Application, :put_env, [:libcluster, :topologies, topologies])
    {:ok, _} = call(a, LibclusterHost, :start_supervisor, [topologies, :cs_test_cluster_sup])
  end

  defp assert_attributed_to_libcluster(%{a: a, b: b, missing: missing}) do
    deadline = System.monotonic_time(:millisecond) + 5_000

    assert TestCluster.poll(deadline, fn ->
             call(a, ClusterScope.Cluster.Libcluster, :telemetry_status, []) == :attached
           end)

    # The manual strategy connected b; the static one retries every 500 ms.
    assert TestCluster.poll(deadline, fn -> b.node in call(a, Node, :list, []) end)
    await_status(a, b.node, :up)
    since = last_event_id(a)

    assert :ok = call(a, ManualStrategy, :disconnect, [:manual, [b.node]])

    down = await_event(a, since, &(&1.type == :down and &1.node == b.node))
    assert down.details.attribution == :libcluster
    assert down.cause =~ "libcluster"
    assert down.cause =~ ":manual"

    # The view: both topologies, from the configuration and the running
    # supervisor; the static one expects b (reconnected by it) and a node
    # that does not exist, which is missing and failing with libcluster's
    # reason.
    view =
      TestCluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
        {:ok, topology} = call(a, ClusterScope, :run, ["cluster_topology", %{}])
        view = topology.libcluster
        static = Enum.find(view.topologies, &(&1.name == :static))
        if static && static.failing != [] && b.node in static.connected, do: view
      end) || flunk("no failing node in the static topology")

    assert view.available
    assert view.telemetry == :attached
    static = Enum.find(view.topologies, &(&1.name == :static))
    assert static.strategy == "Cluster.Strategy.Epmd"
    assert static.sources == [:config, :supervisor]
    assert static.running
    assert static.supervisor == ":cs_test_cluster_sup"
    assert static.expected == Enum.sort([b.node, missing])
    assert static.missing == [missing]

    assert [%{node: ^missing, action: :connect, reason: :unreachable, failures: f}] =
             static.failing

    assert f >= 1

    manual = Enum.find(view.topologies, &(&1.name == :manual))
    assert manual.strategy == "ClusterScope.Test.ManualStrategy"
    assert manual.expected == nil
    assert manual.expected_source =~ "not knowable"
    assert manual.missing == []

    # The health check says the same.
    {:ok, health} = call(a, ClusterScope, :run, ["cluster_health", %{}])
    assert health.libcluster.status == :degraded
    assert %{topology: :static, node: missing} in health.libcluster.missing
    assert health.status in [:degraded, :critical]

    # And ClusterScope never made :telemetry complain.
    lines = call(a, LibclusterHost, :lines, [])

    refute Enum.any?(lines, fn {_level, text} -> text =~ "Failed to lookup telemetry handlers" end),
           inspect(lines, limit: :infinity)
  end

  defp await_status(peer, node, status) do
    TestCluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
      topology = call(peer, ClusterScope.Cluster.State, :topology, [])
      Enum.find(topology.nodes, &(&1.node == node and &1.status == status))
    end) ||
      flunk(
        "#{node} never #{status} on #{peer.node}: " <>
          inspect(call(peer, ClusterScope.Cluster.State, :topology, []).nodes)
      )
  end

  defp last_event_id(peer) do
    case call(peer, ClusterScope.Cluster.State, :events, [0, 1_000]) do
      [] -> 0
      events -> List.last(events).id
    end
  end

  defp await_event(peer, since, fun) do
    TestCluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
      peer |> call(ClusterScope.Cluster.State, :events, [since, 1_000]) |> Enum.find(fun)
    end) ||
      flunk(
        "no matching event on #{peer.node}: " <>
          inspect(call(peer, ClusterScope.Cluster.State, :events, [since, 1_000]), limit: 50)
      )
  end

  defp call(peer, m, f, a), do: LocalCluster.call(peer, m, f, a, 15_000)
end
