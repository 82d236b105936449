defmodule ClusterScope.Web.ConfiguredEndpointTest do
  # The endpoint as a host gets it: configured through `config :cluster_scope,
  # http: [...]` (here the peer's command line) and started by the
  # application, with the default 1 MiB body limit.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.HTTP

  @moduletag :cluster

  setup do
    port = HTTP.free_port()

    config = ~s([{enabled,true},{port,#{port}},{token,<<"s3cret-token-0123456789">>}])
    {:ok, peer} = LocalCluster.start_peer(link: true, args: ["-cluster_scope", "http", config])
    on_exit(fn -> LocalCluster.stop(peer) end)
    %{peer: peer, url: "http://127.0.0.1:#{port}"}
  end

  test "the application starts the configured endpoint on 127.0.0.1", %{peer: peer, url: url} do
    assert {200, %{"data" => data, "metadata" => meta}, _} = HTTP.get(url <> "/api/v1/operations")
    assert meta["node"] == Atom.to_string(peer.node)
    assert Enum.any?(data["operations"], &(&1["name"] == "node_build_info"))

    # The configured token is the one that authorises a mutation.
    body = ~s({"mode": "nonsense"})

    assert {401, %{"error" => %{"code" => "unauthorized"}}, _} =
             HTTP.post(url <> "/api/v1/cluster/mode", body)

    assert {400, %{"error" => %{"code" => "invalid_params"}}, _} =
             HTTP.post(url <> "/api/v1/cluster/mode", body,
               headers: [{"authorization", "Bearer s3cret-token-0123456789"}]
             )
  end

  test "the default body limit is 1 MiB, refused with a JSON 413", %{url: url} do
    over = ~s({"mode": "#{String.duplicate("x", 1_048_576)}"})

    assert {413, %{"error" => %{"code" => "payload_too_large"} = error}, _} =
             HTTP.post(url <> "/api/v1/cluster/mode", over,
               headers: [{"authorization", "Bearer s3cret-token-0123456789"}]
             )

    assert error["message"] =~ "1048576"
  end
end
