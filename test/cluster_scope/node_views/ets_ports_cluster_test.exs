defmodule ClusterScope.NodeViews.EtsPortsClusterTest do
  # ETS tables and ports across real peers: three with ClusterScope, one
  # without (agentless).
  use ExUnit.Case, async: false

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.{Cluster, HTTP, NodeViewsHolder}

  @moduletag :cluster
  @moduletag timeout: 180_000

  @token "nv-token-0123456789abcdef"

  setup_all do
    [a, b, c] = peers = Cluster.start(3)
    bare = Cluster.start_agentless(a, 41)

    for p <- peers do
      assert Cluster.poll(System.monotonic_time(:millisecond) + 10_000, fn ->
               bare.node in Cluster.call(p, Node, :list, [])
             end)
    end

    # Four tables per agent node, sizes interleaved across nodes; a large
    # one on b.
    for {peer, base} <- [{a, 100}, {b, 200}, {c, 300}], i <- 1..4 do
      {_, _} = Cluster.call(peer, NodeViewsHolder, :table, [:nv_ranked, [:public], base + i * 37])
    end

    {big_owner, "nv_big_table"} =
      Cluster.call(b, NodeViewsHolder, :table, [:nv_big_table, [:public, :named_table], 40_000])

    %{a: a, b: b, c: c, bare: bare, big_owner: big_owner}
  end

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)

  test "ETS top-K across nodes: a large table on one peer ranks first; filters; pages", ctx do
    {:ok, top} = run(ctx.a, "ets_tables", %{"limit" => 5})
    [first | _] = top.tables
    assert first.node == ctx.b.node
    assert first.id == "nv_big_table" and first.name == "nv_big_table" and first.named
    assert first.size == 40_000
    assert first.owner == ProcessRef.to_string(ctx.big_owner)
    assert first.protection == :public and first.type == :set
    assert first.memory_bytes > 40_000 * 8
    memories = Enum.map(top.tables, & &1.memory_bytes)
    assert memories == Enum.sort(memories, :desc)
    assert is_binary(top.next_cursor)

    # Every node answered, the bare one agentless, with per-node totals.
    all = [ctx.a.node, ctx.b.node, ctx.c.node, ctx.bare.node]
    assert Enum.sort(top.nodes) == Enum.sort(all)
    assert top.agentless == [ctx.bare.node]
    assert top.node_errors == []

    for n <- top.per_node do
      assert n.tables > 0 and n.memory_bytes > 0 and n.scanned == n.tables
    end

    refute Cluster.call(ctx.bare, :code, :is_loaded, [ClusterScope.Agent.Processes.Snapshots])

    # Name filter and paging by size: the twelve ranked tables, each once,
    # in order, over pages of five.
    rows = page_all(ctx.c, %{"name" => "nv_ranked", "sort_by" => "size", "limit" => 5}, [])
    assert length(rows) == 12
    sizes = Enum.map(rows, & &1.size)
    assert sizes == Enum.sort(sizes, :desc)
    assert hd(sizes) == 300 + 4 * 37
    assert rows |> Enum.map(& &1.node) |> Enum.uniq() |> length() == 3
    assert length(Enum.uniq_by(rows, &{&1.node, &1.id})) == 12

    # Owner filter: only the owner's node is asked.
    owner = ProcessRef.to_string(ctx.big_owner)
    {:ok, owned} = run(ctx.c, "ets_tables", %{"owner" => owner})
    assert [%{id: "nv_big_table"}] = owned.tables
    assert owned.nodes == [ctx.b.node]

    # Only some nodes; the bare node's tables are read there.
    {:ok, bare_only} = run(ctx.a, "ets_tables", %{"nodes" => [Atom.to_string(ctx.bare.node)]})
    assert bare_only.tables != [] and Enum.all?(bare_only.tables, &(&1.node == ctx.bare.node))
    assert Enum.any?(bare_only.tables, &(&1.owner_name == "code_server"))

    # A page of a table on the node without ClusterScope, read there.
    {:ok, page} =
      run(ctx.a, "ets_table_page", %{
        "node" => Atom.to_string(ctx.bare.node),
        "table" => "ac_tab",
        "limit" => 3
      })

    assert page.agentless and page.count == 3 and page.protection == :public
    assert is_binary(page.next_cursor)
  end

  defp page_all(peer, params, acc) do
    {:ok, page} = run(peer, "ets_tables", params)
    acc = acc ++ page.tables

    case page.next_cursor do
      nil -> acc
      cursor -> page_all(peer, Map.put(params, "cursor", cursor), acc)
    end
  end

  test "ETS bad input: unknown node, missing table, private table", ctx do
    {:error, e} = run(ctx.a, "ets_tables", %{"nodes" => "ghost@nowhere"})
    assert e.code == :invalid_params and e.message =~ "nodes"

    b = Atom.to_string(ctx.b.node)
    {:error, e} = run(ctx.a, "ets_table_page", %{"node" => b, "table" => "no_such_table"})
    assert e.code == :not_found and e.message =~ "table:" and e.message =~ b

    {_, private} = Cluster.call(ctx.c, NodeViewsHolder, :table, [:nv_private, [:private], 3])

    {:error, e} =
      run(ctx.a, "ets_table_page", %{"node" => Atom.to_string(ctx.c.node), "table" => private})

    assert e.code == :invalid_params and e.message =~ "private" and e.details.field == "table"

    {:error, e} = run(ctx.a, "ets_table_page", %{"node" => "ghost@nowhere", "table" => "x"})
    assert e.code == :invalid_params and e.message =~ "node"
  end

  test "a table page over HTTP needs the admin token, redacts secrets and pages by cursor", ctx do
    {:ok, endpoint} =
      Cluster.call(ctx.a, ClusterScope.Web.Endpoint, :start, [[port: 0, token: @token]])

    on_exit(fn -> Cluster.call(ctx.a, ClusterScope.Web.Endpoint, :stop, [endpoint]) end)
    cookie = Atom.to_string(Node.get_cookie())

    # An unnamed table: reached by its #Ref<...> id, URL-encoded.
    {owner, id} =
      Cluster.call(ctx.c, NodeViewsHolder, :table, [:nv_secrets, [:protected, :ordered_set], 12])

    assert id =~ "#Ref<"

    true =
      Cluster.call(ctx.c, NodeViewsHolder, :insert, [
        owner,
        [{:password, "hunter2-secret"}, {:cookie, cookie}, {:auth, @token}]
      ])

    path =
      "/api/v1/cluster/nodes/#{URI.encode_www_form(Atom.to_string(ctx.c.node))}/ets/" <>
        URI.encode_www_form(id) <> "/page"

    assert {401, %{"error" => %{"code" => "unauthorized"}}, _} =
             HTTP.get(endpoint.url <> path <> "?limit=5")

    assert {401, _, _} =
             HTTP.get(endpoint.url <> path,
               headers: [{"authorization", "Bearer wrong-token-0123456789ab"}]
             )

    auth = [{"authorization", "Bearer " <> @token}]

    # An endpoint with no token configured serves no sensitive read: 403.
    {:ok, open} = Cluster.call(ctx.a, ClusterScope.Web.Endpoint, :start, [[port: 0]])
    on_exit(fn -> Cluster.call(ctx.a, ClusterScope.Web.Endpoint, :stop, [open]) end)

    assert {403, %{"error" => %{"code" => "forbidden"}}, _} =
             HTTP.get(open.url <> path, headers: auth)

    objects = http_pages(endpoint.url <> path, auth, nil, [])
    assert length(objects) == 15
    assert length(Enum.uniq(objects)) == 15
    text = Enum.join(objects, "\n")
    refute text =~ "hunter2-secret"
    refute text =~ @token
    if byte_size(cookie) >= 6, do: refute(text =~ cookie)
    assert text =~ "[REDACTED]"

    # Read-only tables list needs no token.
    assert {200, %{"data" => %{"tables" => [_ | _]}}, _} =
             HTTP.get(endpoint.url <> "/api/v1/cluster/ets?limit=3")

    # A table that does not exist: 404 naming the field.
    missing = "/api/v1/cluster/nodes/#{ctx.c.node}/ets/nv_nothing/page"
    assert {404, %{"error" => e}, _} = HTTP.get(endpoint.url <> missing, headers: auth)
    assert e["message"] =~ "table:"
  end

  defp http_pages(url, auth, cursor, acc) do
    q = "?limit=4" <> if(cursor, do: "&cursor=" <> cursor, else: "")
    assert {200, %{"data" => data}, _} = HTTP.get(url <> q, headers: auth)
    assert length(data["objects"]) <= 4
    acc = acc ++ data["objects"]

    case data["next_cursor"] do
      nil -> acc
      next -> http_pages(url, auth, next, acc)
    end
  end

  test "ports across nodes: distribution ports marked with their peer node; sockets with addresses",
       ctx do
    info = Cluster.call(ctx.c, NodeViewsHolder, :sockets, [ctx.c.ip, 300_000])

    {:ok, dist} =
      run(ctx.a, "cluster_ports", %{
        "nodes" => [Atom.to_string(ctx.a.node)],
        "name" => "tcp_inet",
        "limit" => 1000,
        "sort_by" => "input"
      })

    dist_rows = Enum.filter(dist.ports, & &1.distribution)
    peers = Enum.map(dist_rows, & &1.peer_node)

    for n <- [ctx.b.node, ctx.c.node, ctx.bare.node] do
      assert Atom.to_string(n) in peers
    end

    to_b = Enum.find(dist_rows, &(&1.peer_node == Atom.to_string(ctx.b.node)))
    assert to_b.kind == "tcp" and to_b.node == ctx.a.node
    assert to_b.local_address =~ ~r/^#{:inet.ntoa(ctx.a.ip)}:\d+$/
    assert to_b.peer_address =~ ~r/^#{:inet.ntoa(ctx.b.ip)}:\d+$/
    assert "connected" in to_b.states
    assert to_b.input > 0 and to_b.output > 0
    assert Enum.all?(dist.ports -- dist_rows, &(&1.peer_node == nil))

    # Across the cluster by output: the socket that sent 300 KB on c first.
    {:ok, by_output} = run(ctx.b, "cluster_ports", %{"sort_by" => "output", "limit" => 3})
    [top | _] = by_output.ports
    assert top.node == ctx.c.node and top.id == info.sender
    assert top.output >= 300_000
    ip = to_string(:inet.ntoa(ctx.c.ip))
    assert top.local_address == "#{ip}:#{info.sender_port}"
    assert top.peer_address == "#{ip}:#{info.listen_port}"

    assert Enum.sort(by_output.nodes) ==
             Enum.sort([ctx.a.node, ctx.b.node, ctx.c.node, ctx.bare.node])

    assert by_output.agentless == [ctx.bare.node]

    assert Enum.any?(
             by_output.per_node,
             &(&1.node == ctx.bare.node and &1.distribution_ports > 0)
           )

    # Pages: every port of the cluster once.
    rows = ports_pages(ctx.a, %{"limit" => 7, "sort_by" => "memory"}, [])
    assert length(rows) == length(Enum.uniq_by(rows, &{&1.node, &1.id}))
    memories = Enum.map(rows, & &1.memory)
    assert memories == Enum.sort(memories, :desc)

    # The socket-module socket, with its address.
    {:ok, sockets} = run(ctx.a, "cluster_ports", %{"name" => "socket", "limit" => 1000})
    sock = Enum.find(sockets.ports, &(&1.local_address == "#{ip}:#{info.socket_port}"))
    assert sock.kind == "socket" and sock.node == ctx.c.node
  end

  defp ports_pages(peer, params, acc) do
    {:ok, page} = run(peer, "cluster_ports", params)
    acc = acc ++ page.ports

    case page.next_cursor do
      nil -> acc
      cursor -> ports_pages(peer, Map.put(params, "cursor", cursor), acc)
    end
  end
end
