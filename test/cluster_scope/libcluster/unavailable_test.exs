defmodule ClusterScope.Libcluster.UnavailableTest do
  # CI's path: a host without libcluster nor :telemetry. The topology
  # operation says libcluster is absent, health ignores it, nothing crashes
  # and nothing is logged. Runs on a peer whose code path has neither
  # library (removed from it when this run has them, e.g. with ERL_LIBS).
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.Libcluster
  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.LibclusterHost

  @moduletag :cluster

  test "no libcluster: the topology says so, health ignores it, no crash, no warning" do
    {:ok, peer} = LocalCluster.start_peer(connection: :standard_io, link: false, apps: [])

    on_exit(fn -> LocalCluster.stop(peer) end)

    # Its code path may hold each twice (-pa and ERL_LIBS): remove them all.
    for app <- [:libcluster, :telemetry], do: del_paths(peer, app)
    :ok = LocalCluster.call(peer, LibclusterHost, :capture_logs, [])
    {:ok, _} = LocalCluster.call(peer, :application, :ensure_all_started, [:cluster_scope])

    refute LocalCluster.call(peer, Libcluster, :available?, [])
    assert LocalCluster.call(peer, Libcluster, :telemetry_status, []) == :waiting

    {:ok, topology} = LocalCluster.call(peer, ClusterScope, :run, ["cluster_topology", %{}])
    assert %{available: false, reason: reason} = topology.libcluster
    assert reason =~ "libcluster is not loaded"

    {:ok, health} = LocalCluster.call(peer, ClusterScope, :run, ["cluster_health", %{}])
    assert health.libcluster == %{status: :absent, missing: [], failing: []}

    # Over HTTP-shaped JSON too: the view encodes.
    assert {:ok, _json} = LocalCluster.call(peer, ClusterScope.JSON, :encode, [topology])

    # A second later the server still waits, quietly.
    Process.sleep(1_000)
    assert LocalCluster.call(peer, Libcluster, :telemetry_status, []) == :waiting
    lines = LocalCluster.call(peer, LibclusterHost, :lines, [])

    refute Enum.any?(lines, fn {level, _} -> level in [:warning, :error, :critical] end),
           inspect(lines, limit: :infinity)
  end

  test "health of a view: absent, healthy, degraded with missing and failing pairs" do
    assert Libcluster.health(%{available: false, reason: "x"}).status == :absent

    ok = %{
      available: true,
      telemetry: :attached,
      topologies: [%{name: :t, missing: [], failing: []}]
    }

    assert %{status: :healthy, topology_count: 1, missing: [], failing: []} =
             Libcluster.health(ok)

    bad = %{
      ok
      | topologies: [
          %{name: :t, missing: [:a@h], failing: []},
          %{name: :u, missing: [], failing: [%{node: :b@h, reason: :unreachable, failures: 3}]}
        ]
    }

    assert %{status: :degraded, missing: [%{topology: :t, node: :a@h}], failing: [f]} =
             Libcluster.health(bad)

    assert f == %{topology: :u, node: :b@h, reason: :unreachable, failures: 3}
  end

  defp del_paths(peer, app) do
    for dir <- LocalCluster.call(peer, :code, :get_path, []),
        dir |> Path.dirname() |> Path.basename() |> String.split("-") |> hd() == "#{app}" do
      LocalCluster.call(peer, :code, :del_path, [dir])
    end

    assert LocalCluster.call(peer, :code, :where_is_file, [~c"#{app}.app"]) == :non_existing
    # The code server's last resort is the boot loader's own path (the -pa
    # flags): align it, or the module would still load from there.
    :ok =
      LocalCluster.call(peer, :erl_prim_loader, :set_path, [
        LocalCluster.call(peer, :code, :get_path, [])
      ])
  end
end
