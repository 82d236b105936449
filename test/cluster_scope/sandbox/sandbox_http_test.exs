defmodule ClusterScope.Sandbox.HTTPTest do
  # The five routes over real sockets: JSON in (children with "$atom"
  # arguments), JSON out, the token for the mutating ones.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  @token "sandbox-token-0123456789abcdef"

  setup do
    previous = Application.fetch_env(:cluster_scope, :startable_modules)
    Application.put_env(:cluster_scope, :startable_modules, [ClusterScope.Test.SandboxWorker])
    ClusterScope.Config.load()
    {:ok, endpoint} = Endpoint.start(port: 0, token: @token)

    on_exit(fn ->
      Endpoint.stop(endpoint)

      for {:ok, %{sandboxes: l}} <- [ClusterScope.Sandbox.list()],
          s <- l,
          do: ClusterScope.Sandbox.destroy(s.id)

      case previous do
        {:ok, v} -> Application.put_env(:cluster_scope, :startable_modules, v)
        :error -> Application.delete_env(:cluster_scope, :startable_modules)
      end

      ClusterScope.Config.load()
    end)

    %{url: endpoint.url <> "/api/v1/cluster/sandboxes"}
  end

  defp auth, do: [headers: [{"authorization", "Bearer " <> @token}]]

  test "create, list, info, migrate refusal, destroy over HTTP", %{url: url} do
    body =
      ~s({"name": "web", "strategy": "round_robin", "children": [{"module": "ClusterScope.Test.SandboxWorker", "count": 2, "args": [{"$atom": "ok"}]}]})

    # Mutating: refused without the token, nothing made.
    assert {401, %{"error" => %{"details" => %{"scope" => "control"}}}, _} = HTTP.post(url, body)
    assert {:ok, %{sandboxes: []}} = ClusterScope.Sandbox.list()

    assert {200, %{"data" => created}, _} = HTTP.post(url, body, auth())
    assert created["processes"] == 2
    assert created["nodes"] == %{to_string(node()) => 2}
    assert created["placement_reason"] =~ "round robin"

    assert {200, %{"data" => %{"sandboxes" => [s]}}, _} = HTTP.get(url)
    assert s["name"] == "web" and s["running"] == 2

    assert {200, %{"data" => info}, _} = HTTP.get(url <> "/" <> created["id"])
    [part] = Map.values(info["nodes"])
    assert [%{"pid" => "0." <> _, "status" => "waiting"}, _] = part["processes"]
    assert hd(part["processes"])["module"] == "ClusterScope.Test.SandboxWorker"

    assert {400, %{"error" => e}, _} =
             HTTP.post(
               url,
               ~s({"name": "bad", "children": [{"module": "Elixir.System"}]}),
               auth()
             )

    assert e["message"] =~ "startable_modules"

    assert {400, _, _} = HTTP.post(url <> "/web/migrate", ~s({"from": "#{node()}"}), auth())

    assert {404, _, _} = HTTP.get(url <> "/nope")

    assert {200, %{"data" => d}, _} = HTTP.request(:delete, url <> "/web", auth())
    assert d["stopped"] == 2
    assert {404, _, _} = HTTP.get(url <> "/web")
  end
end
