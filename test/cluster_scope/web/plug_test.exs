defmodule ClusterScope.Web.PlugTest do
  # ClusterScope.Web.Plug mounted under a prefix in a plain Plug.Router,
  # called in-process with Plug.Test (Plug has no server without cowboy):
  # the same pages and API as the embedded endpoint. Without Plug the
  # module is absent.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  @token "plug-token-0123456789abcdef"

  # Plug's modules are reached through variables: this file compiles
  # without Plug (no warning) and its :plug tests are excluded then.
  defp plug_test, do: Module.concat(["Plug", "Test"])
  defp plug_conn, do: Module.concat(["Plug", "Conn"])
  defp host, do: Module.concat(["ClusterScope", "Test", "PlugHost"])
  defp web_plug, do: Module.concat(["ClusterScope", "Web", "Plug"])

  describe "without Plug" do
    @describetag :no_plug

    # Compiled here from its source, as a build without Plug compiles it
    # (a _build made with Plug on ERL_LIBS keeps its beam: mix does not
    # track ERL_LIBS, `mix compile --force` after changing it).
    test "the module is absent and its file compiles to nothing, silently" do
      refute Code.ensure_loaded?(Plug)

      stderr =
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          assert Code.compile_file("lib/cluster_scope/web/plug.ex") == []
        end)

      assert stderr == ""
    end
  end

  describe "mounted in a Plug.Router" do
    @describetag :plug

    setup do
      # As in a host application, which starts Plug.
      {:ok, _} = Application.ensure_all_started(:plug)

      # A build made before Plug was on the code path (ERL_LIBS) has no
      # ClusterScope.Web.Plug: compile it here, as a fresh build would.
      unless Code.ensure_loaded?(ClusterScope.Web.Plug),
        do: Code.compile_file("lib/cluster_scope/web/plug.ex")

      unless Code.ensure_loaded?(host()) do
        Code.compile_string("""
        defmodule #{inspect(host())} do
          use Plug.Router
          plug :match
          plug :dispatch

          forward "/cluster_scope",
            to: ClusterScope.Web.Plug,
            init_opts: [token: #{inspect(@token)}, client_rate: 10_000, client_burst: 10_000,
                        max_stream_s: 1, stream_heartbeat_ms: 200]

          get "/" do
            send_resp(conn, 200, "the host's own page")
          end

          match _ do
            send_resp(conn, 404, "the host's 404")
          end
        end
        """)
      end

      {:ok, endpoint} = Endpoint.start(port: 0, token: @token)
      on_exit(fn -> Endpoint.stop(endpoint) end)
      %{endpoint: endpoint}
    end

    defp call(method, path, opts \\ []) do
      conn = plug_test().conn(method, path, Keyword.get(opts, :body))

      conn =
        Enum.reduce(Keyword.get(opts, :headers, []), conn, fn {k, v}, conn ->
          plug_conn().put_req_header(conn, k, v)
        end)

      conn = host().call(conn, host().init([]))
      {conn.status, conn.resp_body, Map.new(conn.resp_headers)}
    end

    defp json(body) do
      {:ok, term} = ClusterScope.JSON.decode(body)
      term
    end

    defp auth, do: [{"authorization", "Bearer " <> @token}]

    test "the host's own routes are untouched" do
      assert {200, "the host's own page", _} = call(:get, "/")
      assert {404, "the host's 404", _} = call(:get, "/elsewhere")
    end

    test "the dashboard's files are the endpoint's, under the prefix", %{endpoint: endpoint} do
      {200, page, headers} = call(:get, "/cluster_scope")
      assert headers["content-type"] =~ "text/html"
      {200, served, _} = HTTP.get(endpoint.url <> "/")
      # The same page, with a base for its relative links.
      assert page ==
               String.replace(served, "<head>", ~s(<head><base href="/cluster_scope/">),
                 global: false
               )

      for path <- ["/static/app.js", "/static/app.css"] do
        {200, body, _} = call(:get, "/cluster_scope" <> path)
        {200, direct, _} = HTTP.get(endpoint.url <> path)
        assert body == direct
      end

      assert {404, body, _} = call(:get, "/cluster_scope/static/../mix.exs")
      assert json(body)["error"]["code"] == "not_found"
    end

    test "the API and the OpenAPI document answer as on the endpoint", %{endpoint: endpoint} do
      {200, body, headers} = call(:get, "/cluster_scope/api/v1/operations")
      assert headers["content-type"] =~ "application/json"
      {200, direct, _} = HTTP.get(endpoint.url <> "/api/v1/operations")
      names = fn data -> data["data"]["operations"] |> Enum.map(& &1["name"]) |> Enum.sort() end
      assert names.(json(body)) == names.(direct)
      assert "demo_cut_node" in names.(json(body))

      {200, doc, _} = call(:get, "/cluster_scope/api/openapi.json")
      {200, direct_doc, _} = HTTP.get(endpoint.url <> "/api/openapi.json")
      assert json(doc)["paths"] == direct_doc["paths"]

      {200, topo, _} = call(:get, "/cluster_scope/api/v1/cluster/topology")
      assert json(topo)["data"]["nodes"] != []
    end

    test "tokens and scopes hold under the prefix" do
      path = "/cluster_scope/api/v1/demo/nodes/x@127.0.0.1/cut"

      {401, body, headers} =
        call(:post, path, body: "{}", headers: [{"content-type", "application/json"}])

      assert json(body)["error"]["code"] == "unauthorized"
      assert headers["www-authenticate"] =~ "Bearer"

      # With the token: the operation runs (and refuses: not demo mode).
      {403, body, _} =
        call(:post, path, body: "{}", headers: [{"content-type", "application/json"} | auth()])

      assert json(body)["error"]["message"] =~ "demo mode"

      {400, body, _} = call(:get, "/cluster_scope/api/v1/cluster/events?since=-1")
      assert json(body)["error"]["code"] == "invalid_params"

      # A cross-site Origin is refused; the conn's own is served.
      {403, _, _} =
        call(:get, "/cluster_scope/api/v1/operations",
          headers: [{"origin", "http://evil.example"}]
        )

      {200, _, _} =
        call(:get, "/cluster_scope/api/v1/operations",
          headers: [{"origin", "http://www.example.com"}]
        )
    end

    test "the plug's token is a secret of the node: redacted from answers" do
      ClusterScope.TestOps.register()
      plug_only = "plug-only-token-" <> Integer.to_string(System.unique_integer([:positive]))

      {:ok, _} = Application.ensure_all_started(:plug)
      settings = web_plug().init(token: plug_only)
      conn = plug_test().conn(:get, "/api/v1/test/echo?text=" <> plug_only)
      conn = web_plug().call(conn, settings)
      assert conn.status == 200
      refute conn.resp_body =~ plug_only
      assert {:ok, %{"data" => %{"echo" => echoed}}} = ClusterScope.JSON.decode(conn.resp_body)
      assert echoed != plug_only
    end

    test "bad options are refused at init, naming them" do
      assert_raise ArgumentError, ~r/token/, fn -> web_plug().init(token: "short") end
      assert_raise ArgumentError, ~r/port/, fn -> web_plug().init(port: 1) end
    end

    test "the live stream under the prefix" do
      {200, body, headers} = call(:get, "/cluster_scope/api/v1/stream?topics=cluster,alerts")
      assert headers["content-type"] == "text/event-stream"
      assert body =~ "retry: 1000\n: connected\n\n"
      assert body =~ "event: heartbeat\n"

      {401, _, _} = call(:get, "/cluster_scope/api/v1/stream?topics=trace:abc")
      {400, body, _} = call(:get, "/cluster_scope/api/v1/stream?topics=nope")
      assert json(body)["error"]["message"] =~ "topics"
    end
  end
end
