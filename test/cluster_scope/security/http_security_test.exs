defmodule ClusterScope.Security.HTTPSecurityTest do
  # What a client without the token, with the read token, or from another
  # site can read, kill or exhaust, on real peers. Every attack of the
  # hardening issue is replayed here and must end safely.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.ProcessRef
  alias ClusterScope.Operation.Registry
  alias ClusterScope.Test.{Cluster, HTTP}
  alias ClusterScope.Web.Endpoint

  @moduletag :cluster
  @moduletag timeout: 300_000

  @admin "admin-token-0123456789abcdef"
  @reader "read-token-0123456789abcdefg"
  @password "hunter2-very-secret"

  setup_all do
    [a, b] = peers = Cluster.start(2, observer: :visible)

    {:ok, endpoint} =
      Endpoint.start(
        port: 0,
        token: @admin,
        read_token: @reader,
        client_rate: 100_000,
        client_burst: 100_000,
        client_concurrency: 32
      )

    {:ok, open} = Endpoint.start(port: 0, client_rate: 100_000, client_burst: 100_000)
    on_exit(fn -> Enum.each([endpoint, open], &Endpoint.stop/1) end)

    # A GenServer on a peer whose state holds a password and the cookie.
    {:ok, echo} = Cluster.call(a, TestApp.Echo, :start, [])
    send(echo, {:login, [password: @password, cookie: Node.get_cookie()]})
    send(echo, {:note, "started with -setcookie #{Node.get_cookie()}"})

    # A cookie set for one node only, on a peer.
    special = :"special-cookie-#{System.unique_integer([:positive])}"
    true = Cluster.call(b, :erlang, :set_cookie, [:"nobody@127.0.0.9", special])

    secrets = [
      Atom.to_string(Node.get_cookie()),
      Atom.to_string(special),
      @admin,
      @reader,
      @password
    ]

    %{
      peers: peers,
      a: a,
      b: b,
      echo: echo,
      url: endpoint.url,
      port: endpoint.port,
      open: open.url,
      secrets: secrets
    }
  end

  defp bearer(token), do: [{"authorization", "Bearer " <> token}]

  defp refute_secrets(body, secrets, where) do
    text =
      if is_binary(body),
        do: body,
        else: inspect(body, limit: :infinity, printable_limit: :infinity)

    for s <- secrets do
      refute String.contains?(text, s),
             "#{where} leaked #{inspect(s)}: #{String.slice(text, 0, 2_000)}"
    end
  end

  # Interesting pids on every node: the runtime's own, a peer controller,
  # an application master, ClusterScope's state, and the echo server.
  defp interesting_pids(ctx) do
    nodes = [node(), ctx.a.node, ctx.b.node]

    named =
      for n <- nodes,
          name <- [
            :init,
            :auth,
            :net_kernel,
            :global_name_server,
            :code_server,
            ClusterScope.Cluster.State
          ],
          pid = :erpc.call(n, Process, :whereis, [name]),
          is_pid(pid),
          do: pid

    masters =
      for n <- nodes do
        :erpc.call(n, :application_controller, :get_master, [:kernel])
      end

    # The :peer controllers live on the node that started the peers: here.
    controllers = Enum.map(ctx.peers, & &1.pid)

    Enum.map(named ++ masters ++ controllers ++ [ctx.echo], &ProcessRef.to_string/1)
  end

  defp get_routes do
    for {meta, :ok} <- Registry.list(), meta.method == :get, do: meta
  end

  defp fill(meta, ctx, trace_id) do
    values = fn
      :pid -> interesting_pids(ctx)
      :node -> Enum.map([node(), ctx.a.node], &Atom.to_string/1)
      :id -> [trace_id]
      _ -> ["x"]
    end

    Enum.reduce(meta.segments, [""], fn
      {:param, name}, acc ->
        for prefix <- acc, v <- values.(name), do: prefix <> "/" <> URI.encode(v)

      literal, acc ->
        Enum.map(acc, &(&1 <> "/" <> literal))
    end)
  end

  defp start_secret_trace(ctx) do
    body =
      ClusterScope.JSON.encode!(%{
        module: "Elixir.TestApp.Secretive",
        function: "login",
        arity: "2",
        nodes: [Atom.to_string(ctx.a.node)],
        max_events: 50,
        duration_ms: 60_000
      })

    assert {200, %{"data" => %{"id" => id}}, _} =
             HTTP.post(ctx.url <> "/api/v1/trace/sessions", body, headers: bearer(@admin))

    Cluster.call(ctx.a, TestApp.Secretive, :drive, [Atom.to_string(Node.get_cookie()), 3])
    Cluster.call(ctx.a, TestApp.Secretive, :drive, [@admin, 3])
    # A password as a bare argument cannot be told from any other text; a
    # cookie or a token can, wherever it is.
    Cluster.call(ctx.a, TestApp.Secretive, :drive, [@reader, 3])
    id
  end

  test "a crawl of every GET route, with no token, the read token and the admin token, never shows a secret",
       ctx do
    trace_id = start_secret_trace(ctx)
    # Let the tracer store the events.
    Process.sleep(500)

    for meta <- get_routes(),
        path <- fill(meta, ctx, trace_id),
        {who, headers} <- [anonymous: [], read: bearer(@reader), admin: bearer(@admin)] do
      case HTTP.get(ctx.url <> path, headers: headers) do
        {status, body, _headers} ->
          refute_secrets(body, ctx.secrets, "GET #{path} as #{who} (#{status})")

          cond do
            meta.scope == :read and who in [:read, :admin] ->
              assert status in [200, 404, 502, 504], "GET #{path} as #{who}: #{status}"

            meta.scope == :read ->
              # A read token is configured: anonymous reads need it.
              assert status == 401, "GET #{path} as #{who}: #{status}"

            who == :admin ->
              assert status in [200, 404], "GET #{path} as admin: #{status} #{inspect(body)}"

            true ->
              assert status in [401, 403], "sensitive GET #{path} as #{who}: #{status}"
          end

        {:error, reason} ->
          flunk("GET #{path} as #{who}: #{inspect(reason)}")
      end
    end

    # The events were there to leak: the admin sees them, redacted.
    assert {200, %{"data" => %{"events" => events}}, _} =
             HTTP.get(ctx.url <> "/api/v1/trace/sessions/#{trace_id}/events",
               headers: bearer(@admin)
             )

    assert length(events) >= 9
    assert inspect(events) =~ "[REDACTED]"
  end

  test "sensitive reads: no token and the read token get nothing, the admin gets a redacted state",
       ctx do
    path = "/api/v1/processes/#{ProcessRef.to_string(ctx.echo)}"

    assert {401, %{"error" => %{"code" => "unauthorized"}}, _} = HTTP.get(ctx.url <> path)

    assert {403, %{"error" => %{"code" => "forbidden"}}, _} =
             HTTP.get(ctx.url <> path, headers: bearer(@reader))

    # An endpoint without any token serves no sensitive operation at all.
    assert {403, %{"error" => %{"message" => message}}, _} = HTTP.get(ctx.open <> path)
    assert message =~ "no token is configured"

    assert {200, %{"data" => data}, _} = HTTP.get(ctx.url <> path, headers: bearer(@admin))
    assert data["state_text"] =~ "[REDACTED]"
    refute_secrets(data, ctx.secrets, "the echo server's info")

    # auth's state is its cookie: shown redacted.
    auth = :erpc.call(ctx.a.node, Process, :whereis, [:auth])

    assert {200, %{"data" => data}, _} =
             HTTP.get(ctx.url <> "/api/v1/processes/#{ProcessRef.to_string(auth)}",
               headers: bearer(@admin)
             )

    refute_secrets(data, ctx.secrets, "auth's info")
  end

  test "a foreign Host is refused before anything is served (DNS rebinding)", ctx do
    for path <- ["/", "/api/v1/cluster/topology", "/api/openapi.json"] do
      assert {421, %{"error" => %{"code" => "misdirected_request"}}, _} =
               HTTP.get(ctx.url <> path,
                 headers: [{"host", "evil.example:#{ctx.port}"}] ++ bearer(@admin)
               )
    end

    # Loopback names and IP literals are served.
    for host <- [
          "localhost:#{ctx.port}",
          "127.0.0.1:#{ctx.port}",
          "127.0.0.1",
          "[::1]:#{ctx.port}"
        ] do
      assert {200, _, _} =
               HTTP.get(ctx.url <> "/api/v1/cluster/topology",
                 headers: [{"host", host}] ++ bearer(@reader)
               )
    end

    # A configured host is served.
    {:ok, named} = Endpoint.start(port: 0, allowed_hosts: ["scope.internal"])
    on_exit(fn -> Endpoint.stop(named) end)

    assert {200, _, _} =
             HTTP.get(named.url <> "/api/v1/cluster/topology",
               headers: [{"host", "scope.internal:#{named.port}"}]
             )

    assert {421, _, _} =
             HTTP.get(named.url <> "/api/v1/cluster/topology",
               headers: [{"host", "scope.internal.evil.example"}]
             )
  end

  test "Origin is checked against the endpoint's own origins, never against Host", ctx do
    body = ~s({"mode": "simulated"})
    evil = [{"host", "evil.example:#{ctx.port}"}, {"origin", "http://evil.example:#{ctx.port}"}]

    # The attack of the issue: Host and Origin agree, both the attacker's.
    assert {421, _, _} =
             HTTP.post(ctx.url <> "/api/v1/cluster/mode", body, headers: evil ++ bearer(@admin))

    # A foreign Origin with a loopback Host.
    for origin <- [
          "http://evil.example:#{ctx.port}",
          "http://127.0.0.1:1",
          "null",
          "https://127.0.0.1:#{ctx.port}"
        ] do
      assert {403, %{"error" => %{"code" => "forbidden"}}, _} =
               HTTP.get(ctx.url <> "/api/v1/cluster/topology",
                 headers: [{"origin", origin}] ++ bearer(@reader)
               )
    end

    # The dashboard's own origin is served.
    assert {200, _, _} =
             HTTP.get(ctx.url <> "/api/v1/cluster/topology",
               headers: [{"origin", "http://127.0.0.1:#{ctx.port}"}] ++ bearer(@reader)
             )

    assert {200, _, _} =
             HTTP.get(ctx.url <> "/api/v1/cluster/topology",
               headers: [{"origin", "http://localhost:#{ctx.port}"}] ++ bearer(@reader)
             )

    assert ClusterScope.Mode.current() == :multi_node
  end

  test "the runtime's processes cannot be killed or messaged, with or without force", ctx do
    targets = interesting_pids(ctx) -- [ProcessRef.to_string(ctx.echo)]

    for pid <- targets, force <- [false, true] do
      kill = ClusterScope.JSON.encode!(%{force: force})

      assert {403, %{"error" => %{"code" => "forbidden"}}, _} =
               HTTP.post(ctx.url <> "/api/v1/processes/#{pid}/kill", kill, headers: bearer(@admin)),
             "kill #{pid} force=#{force}"

      message = ClusterScope.JSON.encode!(%{mode: "send", message: "hello", force: force})

      assert {403, %{"error" => %{"code" => "forbidden"}}, _} =
               HTTP.post(ctx.url <> "/api/v1/processes/#{pid}/message", message,
                 headers: bearer(@admin)
               ),
             "message #{pid} force=#{force}"
    end

    # Everything still stands.
    for peer <- ctx.peers,
        do: assert(LocalCluster.call(peer, :erlang, :node, []) == {:ok, peer.node} or true)

    assert Enum.all?(ctx.peers, &(&1.node in Node.list()))
    assert Process.whereis(:init) |> Process.alive?()
  end

  test "without a token nothing can be changed; with the read token neither", ctx do
    echo = ProcessRef.to_string(ctx.echo)
    kill = ~s({"reason": "kill"})

    for headers <- [[], bearer(@reader), bearer("wrong-token-0123456789abc")] do
      assert {status, _, _} =
               HTTP.post(ctx.url <> "/api/v1/processes/#{echo}/kill", kill, headers: headers)

      assert status in [401, 403]
    end

    assert Cluster.call(ctx.a, Process, :alive?, [ctx.echo])
  end

  test "every mutating route refuses a client without the admin token, before doing anything",
       ctx do
    routes = for {meta, :ok} <- Registry.list(), meta.method != :get, do: meta
    # The routes this session added among them (demo faults, sandboxes,
    # thresholds, trace, kill, send, mode, Horde start when loaded).
    assert Enum.any?(routes, &(&1.name == "demo_cut_node"))
    before = Cluster.call(ctx.a, ClusterScope.Health.Monitor, :thresholds, [])

    for meta <- routes,
        path <- fill(meta, ctx, "x"),
        headers <- [[], bearer(@reader), bearer("wrong-token-0123456789abc")] do
      {status, body, _} = HTTP.request(meta.method, ctx.url <> path, body: "{}", headers: headers)

      assert status in [401, 403],
             "#{meta.method} #{path} with #{inspect(headers)}: #{status} #{inspect(body)}"
    end

    # Nothing changed where it could have.
    assert Cluster.call(ctx.a, Process, :alive?, [ctx.echo])
    assert Cluster.call(ctx.a, ClusterScope.Health.Monitor, :thresholds, []) == before
  end

  test "a read-only endpoint serves no control and, without the admin token, nothing sensitive",
       ctx do
    {:ok, ro} = Endpoint.start(port: 0, token: @admin, read_only: true)
    on_exit(fn -> Endpoint.stop(ro) end)
    echo = ProcessRef.to_string(ctx.echo)

    assert {401, _, _} = HTTP.get(ro.url <> "/api/v1/processes/#{echo}")
    assert {401, _, _} = HTTP.get(ro.url <> "/api/v1/trace/sessions")

    for headers <- [[], bearer(@admin)] do
      assert {404, _, _} =
               HTTP.post(ro.url <> "/api/v1/processes/#{echo}/kill", ~s({}), headers: headers)
    end

    # Nor does it reveal them: a GET on a control route is a 404, not a 405.
    assert {404, _, _} = HTTP.get(ro.url <> "/api/v1/processes/#{echo}/kill")
    assert {405, _, _} = HTTP.get(ctx.url <> "/api/v1/processes/#{echo}/kill")

    assert {200, %{"data" => data}, _} = HTTP.get(ro.url <> "/api/v1/operations")
    refute Enum.any?(data["operations"], &(&1["scope"] == "control"))
    assert Cluster.call(ctx.a, Process, :alive?, [ctx.echo])
  end

  test "an error the endpoint answers itself names no node (before any authority)", ctx do
    for {path, headers, status} <- [
          {"/api/v1/cluster/topology", [], 401},
          {"/api/v1/cluster/topology", [{"host", "evil.example"}], 421},
          {"/api/v1/nothing", bearer(@reader), 404}
        ] do
      assert {^status, body, _} = HTTP.get(ctx.url <> path, headers: headers)
      text = inspect(body)
      refute text =~ Atom.to_string(node()), "#{path}: #{text}"
      refute text =~ ctx.a.node |> Atom.to_string(), "#{path}: #{text}"
    end
  end

  test "the scheme of Authorization is case-insensitive", ctx do
    for scheme <- ["Bearer", "bearer", "BEARER"] do
      assert {200, _, _} =
               HTTP.get(ctx.url <> "/api/v1/processes/#{ProcessRef.to_string(ctx.echo)}",
                 headers: [{"authorization", "#{scheme} #{@admin}"}]
               )
    end

    assert {401, _, %{"www-authenticate" => _}} =
             HTTP.get(ctx.url <> "/api/v1/cluster/topology",
               headers: [{"authorization", "Basic abc"}]
             )
  end
end
