defmodule ClusterScope.NodeViews.EtsPortsLocalTest do
  # The node side of the ETS and port views, and the operations on this
  # node alone (the cluster-wide behaviour is in ets_ports_cluster_test).
  use ExUnit.Case, async: false

  alias ClusterScope.NodeViews.{Ranking, Ets}
  alias ClusterScope.NodeViews.Ets.Local, as: EtsLocal
  alias ClusterScope.NodeViews.Ports.Local, as: PortsLocal

  test "the node-side modules call nothing but OTP and Redact, so they load onto a node without ClusterScope" do
    otp_root = List.to_string(:code.root_dir())

    for module <- [EtsLocal, PortsLocal] do
      {^module, binary, _} = :code.get_object_code(module)
      {:ok, {^module, [imports: imports]}} = :beam_lib.chunks(binary, [:imports])
      modules = imports |> Enum.map(&elem(&1, 0)) |> Enum.uniq()

      for mod <- modules -- [ClusterScope.Redact] do
        path = :code.which(mod)

        assert (is_list(path) and List.to_string(path) =~ otp_root) or path == :preloaded,
               "#{inspect(module)} calls #{inspect(mod)}, which is not part of OTP (#{inspect(path)})"
      end
    end
  end

  defp opts(extra), do: Map.merge(%{sort_by: :memory, limit: 1000}, Map.new(extra))

  test "tables are ranked by memory in bytes or by size, filtered by name and owner, paged by cursor" do
    tabs =
      for {n, objects} <- [{1, 10}, {2, 3_000}, {3, 500}] do
        t = :ets.new(:"nv_local_#{n}", [:public])
        :ets.insert(t, for(i <- 1..objects, do: {i, :binary.copy("x", 20)}))
        t
      end

    on_exit(fn -> Enum.each(tabs, &safe_delete/1) end)

    %{rows: rows} = EtsLocal.tables_v1(opts(name: "nv_local_"))
    assert Enum.map(rows, & &1.name) == ["nv_local_2", "nv_local_3", "nv_local_1"]
    [big | _] = rows

    assert big.memory_bytes ==
             :ets.info(Enum.at(tabs, 1), :memory) * :erlang.system_info(:wordsize)

    assert big.value == big.memory_bytes
    assert big.named == false
    assert big.id =~ "#Ref<"
    assert big.owner == self()
    assert big.protection == :public and big.type == :set

    %{rows: by_size, more: true} =
      EtsLocal.tables_v1(opts(sort_by: :size, limit: 2, name: "nv_local_"))

    assert Enum.map(by_size, & &1.size) == [3_000, 500]

    me = Atom.to_string(node())
    last = List.last(by_size)

    %{rows: rest, more: false} =
      EtsLocal.tables_v1(
        opts(sort_by: :size, name: "nv_local_", after: {last.value, me, last.id})
      )

    assert Enum.map(rest, & &1.size) == [10]

    # Owner filter: a table owned by another process only.
    owner = spawn(fn -> receive do: (:stop -> :ok) end)
    parent = self()
    send(owner, :noop)

    other =
      spawn(fn ->
        t = :ets.new(:nv_local_other, [:public])
        send(parent, {:tab, t})
        receive do: (:stop -> :ok)
      end)

    assert_receive {:tab, _}
    ref = ClusterScope.ProcessRef.from_pid(other)
    %{rows: owned} = EtsLocal.tables_v1(opts(owner: {ref.id, ref.serial}))
    assert [%{name: "nv_local_other", owner: ^other, owner_name: nil}] = owned
    send(other, :stop)
    send(owner, :stop)
  end

  test "a scan is bounded by max_tables and by its deadline" do
    tabs = for _ <- 1..600, do: :ets.new(:nv_local_many, [])
    on_exit(fn -> Enum.each(tabs, &safe_delete/1) end)

    bounded = EtsLocal.tables_v1(opts(max_tables: 50))
    assert bounded.scanned == 50 and bounded.truncated and not bounded.timed_out
    assert bounded.total >= 600

    late = EtsLocal.tables_v1(opts(deadline_ms: -1))
    assert late.timed_out
    assert late.scanned < late.total
  end

  test "a page walks a table once by key cursor, redacted, bounded; private, missing and stale cursors are refused" do
    cookie = Atom.to_string(Node.get_cookie())
    t = :ets.new(:nv_local_page, [:ordered_set, :protected])
    :ets.insert(t, for(i <- 1..25, do: {i, "v#{i}"}))
    :ets.insert(t, {:password, "hunter2"})
    :ets.insert(t, {:cookie, cookie})
    on_exit(fn -> safe_delete(t) end)
    id = EtsLocal.id_text(t)
    secrets = {["password"], ["tok-1234567890"]}

    pages = walk_pages(id, 10, secrets)
    objects = Enum.flat_map(pages, & &1.objects)
    assert length(pages) == 3
    assert Enum.all?(pages, &(length(&1.objects) <= 10))
    assert length(objects) == 27
    assert length(Enum.uniq(objects)) == 27
    assert "{password,<<\"[REDACTED]\">>}" in objects
    refute Enum.any?(objects, &(&1 =~ "hunter2"))
    if cookie != "nocookie", do: refute(Enum.any?(objects, &(&1 =~ cookie)))

    private = :ets.new(:nv_local_private, [:private])
    on_exit(fn -> safe_delete(private) end)

    holder =
      spawn(fn ->
        p = :ets.new(:nv_local_private_other, [:private, :named_table])
        :ets.insert(p, {1, 2})
        receive do: (:stop -> :ok)
      end)

    Process.sleep(50)
    assert {:error, :private} = EtsLocal.page_v1("nv_local_private_other", nil, 5, secrets)
    send(holder, :stop)
    assert {:error, :no_table} = EtsLocal.page_v1("no_such_table_anywhere", nil, 5, secrets)

    # A hash table whose cursor key was deleted.
    s = :ets.new(:nv_local_set, [:set, :public])
    :ets.insert(s, for(i <- 1..20, do: {i, i}))
    on_exit(fn -> safe_delete(s) end)
    {:ok, first} = EtsLocal.page_v1(EtsLocal.id_text(s), nil, 5, secrets)
    {:key, key} = first.next_key
    :ets.delete(s, key)

    assert {:error, :cursor_gone} =
             EtsLocal.page_v1(EtsLocal.id_text(s), {:after, key}, 5, secrets)

    # A bag key with more objects than the page: cut, and the walk moves on.
    b = :ets.new(:nv_local_bag, [:bag, :public])
    :ets.insert(b, for(i <- 1..30, do: {:k, i}))
    :ets.insert(b, {:other, 1})
    on_exit(fn -> safe_delete(b) end)
    {:ok, bag} = EtsLocal.page_v1(EtsLocal.id_text(b), nil, 5, secrets)
    assert length(bag.objects) == 5
    assert bag.cut_key
  end

  defp walk_pages(id, limit, secrets, cursor \\ nil, acc \\ []) do
    {:ok, page} = EtsLocal.page_v1(id, cursor, limit, secrets)
    acc = [page | acc]

    case page.next_key do
      {:key, key} -> walk_pages(id, limit, secrets, {:after, key}, acc)
      nil -> Enum.reverse(acc)
    end
  end

  test "the page operation on this node: errors name the field, objects are redacted" do
    t = :ets.new(:nv_local_op, [:named_table, :public])
    :ets.insert(t, {"api_token", "abc-secret-value"})
    :ets.insert(t, {:plain, 1})
    on_exit(fn -> safe_delete(t) end)
    me = Atom.to_string(node())

    {:ok, page} =
      ClusterScope.run("ets_table_page", %{"node" => me, "table" => "nv_local_op", "limit" => 10})

    assert page.count == 2
    refute Enum.any?(page.objects, &(&1 =~ "abc-secret-value"))

    {:error, e} = ClusterScope.run("ets_table_page", %{"node" => me, "table" => "nope_nope"})
    assert e.code == :not_found and e.message =~ "table:"

    {:error, e} =
      ClusterScope.run("ets_table_page", %{"node" => "nobody@nowhere", "table" => "x"})

    assert e.code == :invalid_params and e.message =~ "node"

    {:error, e} =
      ClusterScope.run("ets_table_page", %{
        "node" => me,
        "table" => "nv_local_op",
        "cursor" => "!!"
      })

    assert e.code == :invalid_params and e.message =~ "cursor"

    # A cursor naming an atom that does not exist is refused, not created.
    forged = Base.url_encode64(<<131, 119, 12, "nv_never_atm">>, padding: false)

    {:error, e} =
      ClusterScope.run("ets_table_page", %{
        "node" => me,
        "table" => "nv_local_op",
        "cursor" => forged
      })

    assert e.code == :invalid_params
    assert_raise ArgumentError, fn -> String.to_existing_atom("nv_never_atm") end

    {:error, e} = ClusterScope.run("ets_table_page", %{"node" => me, "table" => "code"})
    # The code server's unnamed table "code" is found by its id only, never by that name.
    assert e.code == :not_found
  end

  test "ets_tables and cluster_ports refuse bad cursors and parameters, naming the field" do
    {:error, e} = ClusterScope.run("ets_tables", %{"cursor" => "garbage"})
    assert e.code == :invalid_params and e.message =~ "cursor"

    cursor = Ranking.encode_cursor(:size, 5, node(), "x")
    {:error, e} = ClusterScope.run("ets_tables", %{"cursor" => cursor, "sort_by" => "memory"})
    assert e.message =~ "sort_by=size"

    {:error, e} = ClusterScope.run("ets_tables", %{"sort_by" => "contents"})
    assert e.message =~ "sort_by"

    {:error, e} = ClusterScope.run("ets_tables", %{"limit" => 0})
    assert e.message =~ "limit"

    {:error, e} = ClusterScope.run("cluster_ports", %{"nodes" => "ghost@nowhere"})
    assert e.message =~ "nodes"

    {:error, e} = ClusterScope.run("cluster_ports", %{"sort_by" => "bytes"})
    assert e.message =~ "sort_by"
  end

  test "ports: a TCP pair ranked by output, with addresses, states and counters; name filter" do
    {:ok, l} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false)
    {:ok, lport} = :inet.port(l)
    {:ok, c} = :gen_tcp.connect({127, 0, 0, 1}, lport, active: false)
    {:ok, a} = :gen_tcp.accept(l, 1_000)
    :ok = :gen_tcp.send(c, :binary.copy("x", 200_000))
    {:ok, _} = :gen_tcp.recv(a, 0, 1_000)

    on_exit(fn -> Enum.each([l, c, a], &:gen_tcp.close/1) end)

    %{rows: [top | _]} = PortsLocal.ports_v1(%{sort_by: :output, limit: 3})
    assert top.id == PortsLocal.id_text(c)
    assert top.output >= 200_000 and top.value == top.output
    assert top.kind == "tcp" and top.name == "tcp_inet"
    {:ok, {_, cport}} = :inet.sockname(c)
    assert top.local_address == "127.0.0.1:#{cport}"
    assert top.peer_address == "127.0.0.1:#{lport}"
    assert "connected" in top.states
    assert top.stats.send_oct >= 200_000
    assert top.connected == self()
    assert top.distribution == false

    %{rows: rows} = PortsLocal.ports_v1(%{sort_by: :input, limit: 1000, name: "tcp"})
    assert Enum.all?(rows, &(&1.name == "tcp_inet"))
    listener = Enum.find(rows, &(&1.id == PortsLocal.id_text(l)))
    assert "listen" in listener.states
    assert listener.peer_address == nil

    {:ok, s} = :socket.open(:inet, :stream, :tcp)
    :ok = :socket.bind(s, %{family: :inet, addr: {127, 0, 0, 1}, port: 0})
    on_exit(fn -> :socket.close(s) end)
    {:ok, %{port: sport}} = :socket.sockname(s)

    {:ok, listed} = ClusterScope.run("cluster_ports", %{"name" => "socket", "limit" => 1000})
    sock = Enum.find(listed.ports, &(&1.local_address == "127.0.0.1:#{sport}"))
    assert sock.kind == "socket" and sock.name == "socket/inet/stream"
    assert sock.node == node()
  end

  test "the three operations are in the OpenAPI document and on the command line" do
    paths = ClusterScope.Web.OpenAPI.document()["paths"]
    assert paths["/api/v1/cluster/ets"]["get"]
    assert paths["/api/v1/cluster/ports"]["get"]
    page = paths["/api/v1/cluster/nodes/{node}/ets/{table}/page"]["get"]

    assert Enum.map(page["parameters"], & &1["name"]) -- ["node", "table", "limit", "cursor"] ==
             []

    {0, out} = ClusterScope.CLI.main(~w(ets_tables --limit 1 --sort-by size --json))
    assert %{"data" => %{"tables" => [_]}} = json(out)

    {0, out} = ClusterScope.CLI.main(~w(cluster_ports --limit 2 --sort-by output --json))

    assert %{"data" => %{"ports" => [_ | _]}} = json(out)

    me = Atom.to_string(node())

    {0, out} =
      ClusterScope.CLI.main(~w(ets_table_page --param node=#{me} --table ac_tab --limit 1 --json))

    assert %{"data" => %{"count" => 1}} = json(out)
    {1, _} = ClusterScope.CLI.main(~w(ets_table_page --param node=#{me} --table no_such_tab))
  end

  test "the merge in the core takes value, then node order, then each node's own order" do
    answers = [
      {:a@h, %{rows: [%{value: 9, id: "a1"}, %{value: 5, id: "a2"}], more: false}},
      {:b@h, %{rows: [%{value: 10, id: "b1"}, %{value: 5, id: "b2"}], more: false}},
      {:c@h, %{rows: [], more: false}}
    ]

    {:ok, picked, true} = Ranking.merge(answers, 3)

    assert Enum.map(picked, fn {n, r} -> {n, r.id} end) == [
             {:b@h, "b1"},
             {:a@h, "a1"},
             {:a@h, "a2"}
           ]

    {:ok, all, false} = Ranking.merge(answers, 10)
    assert length(all) == 4
    # A node that says it has more keeps the page open.
    {:ok, _, true} = Ranking.merge([{:a@h, %{rows: [%{value: 1, id: "x"}], more: true}}], 10)
    assert {:error, {:invalid_option, _}} = Ranking.merge(answers, 0)
  end

  test "cursor round trip" do
    c = Ranking.encode_cursor(:memory, 123, :"a@b.c", "#Ref<0.1.2.3>")
    assert {:ok, {123, "a@b.c", "#Ref<0.1.2.3>"}} = Ranking.decode_cursor(c, :memory)
    assert {:error, _} = Ranking.decode_cursor(c, :size)
    assert {:error, _} = Ranking.decode_cursor("memory.-1.YQ.YQ", :memory)
    assert {:ok, nil} = Ets.decode_page_cursor(nil)
  end

  defp json(out) do
    {:ok, data} = ClusterScope.JSON.decode(IO.iodata_to_binary(out))
    data
  end

  defp safe_delete(t) do
    :ets.delete(t)
  rescue
    ArgumentError -> :ok
  end
end
