defmodule ClusterScope.NativeUnavailableTest do
  # Loads ClusterScope on real peer nodes whose NIF cannot load, and checks
  # that the application still runs and answers {:error, :native_unavailable}.
  use ExUnit.Case, async: true
  @moduletag :cluster

  alias ClusterScope.LocalCluster

  defp start_peer_with_nif_path(path) do
    {:ok, peer} =
      LocalCluster.start_peer(
        connection: :standard_io,
        link: false,
        app_env: [{:cluster_scope, :native_path, path}]
      )

    on_exit(fn -> System.cmd("kill", ["-KILL", "#{peer.os_pid}"]) end)
    peer
  end

  test "the NIF loads on a peer node" do
    {:ok, peer} = LocalCluster.start_peer(connection: :standard_io, link: false)
    on_exit(fn -> System.cmd("kill", ["-KILL", "#{peer.os_pid}"]) end)

    assert LocalCluster.call(peer, ClusterScope.Native, :loaded?, [])
    info = LocalCluster.call(peer, ClusterScope, :build_info, [])
    assert info.node == peer.node
    assert info.native == ClusterScope.Native.build_info()
  end

  @tag :tmp_dir
  test "a corrupt library leaves the application running without the core", %{tmp_dir: dir} do
    path = Path.join(dir, "libcluster_scope_nif")
    File.write!(path <> ".so", :crypto.strong_rand_bytes(4096))
    peer = start_peer_with_nif_path(path)

    assert_degraded(peer, :load_failed)
  end

  test "a missing library leaves the application running without the core" do
    peer = start_peer_with_nif_path("/nonexistent/libcluster_scope_nif")
    assert_degraded(peer, :load_failed)
  end

  test "a failed load logs one clear error and the module still loads" do
    peer = start_peer_with_nif_path("/nonexistent/libcluster_scope_nif")

    assert {{:module, ClusterScope.Native}, [message]} =
             LocalCluster.call(
               peer,
               ClusterScope.Test.NodeWatcher,
               :reload_native_logging_errors,
               []
             )

    assert message =~ "could not load its native core from /nonexistent/libcluster_scope_nif.so"
    assert message =~ "native_unavailable"
    assert_degraded(peer, :load_failed)
  end

  test "without the core, the HTTP API answers 503 native_unavailable in JSON" do
    peer = start_peer_with_nif_path("/nonexistent/libcluster_scope_nif")

    {:ok, endpoint} = LocalCluster.call(peer, ClusterScope.Web.Endpoint, :start, [[port: 0]])
    url = String.to_charlist(endpoint.url <> "/api/v1/operations")

    {:ok, {{_, status, _}, headers, body}} =
      :httpc.request(:get, {url, []}, [timeout: 10_000], body_format: :binary)

    assert status == 503
    assert {~c"content-type", ~c"application/json"} in headers
    # The peer wrote this by hand; this node's core can read it.
    assert {:ok, %{"error" => %{"code" => "native_unavailable"}}} = ClusterScope.JSON.decode(body)

    # The Elixir API still answers there: only JSON needs the core.
    assert {:ok, %{count: count}} = LocalCluster.call(peer, ClusterScope, :operations, [])
    assert count >= 2
  end

  defp assert_degraded(peer, reason) do
    apps = LocalCluster.call(peer, Application, :started_applications, [])
    assert Enum.any?(apps, &match?({:cluster_scope, _, _}, &1))
    assert LocalCluster.call(peer, Process, :whereis, [ClusterScope.Supervisor]) |> is_pid()

    refute LocalCluster.call(peer, ClusterScope.Native, :loaded?, [])

    assert {:unavailable, {^reason, message}} =
             LocalCluster.call(peer, ClusterScope.Native, :status, [])

    assert is_binary(message) and message != ""

    assert LocalCluster.call(peer, ClusterScope.Native, :build_info, []) ==
             {:error, :native_unavailable}

    assert %{native: {:error, :native_unavailable}, node: node} =
             LocalCluster.call(peer, ClusterScope, :build_info, [])

    assert node == peer.node

    # The doctor says so, critically, with the way out.
    assert {:ok, findings} = LocalCluster.call(peer, ClusterScope.Doctor, :local_findings, [])
    assert [f] = Enum.filter(findings, &(&1.id == :native_unavailable))
    assert f.severity == :critical and f.remediation =~ "cargo"
  end
end
