defmodule ClusterScope.Procs.ClusterTest do
  # The process view on real peers: three with ClusterScope, one without.
  use ExUnit.Case, async: false

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.{Cluster, ProcHolder}
  alias TestApp.Echo

  @moduletag :cluster
  @moduletag timeout: 180_000

  @holders "Elixir.ClusterScope.Test.ProcHolder:hold/1"

  setup_all do
    [a, b, c] = peers = Cluster.start(3)
    bare = Cluster.start_agentless(a, 40)

    for p <- peers do
      assert Cluster.poll(System.monotonic_time(:millisecond) + 10_000, fn ->
               bare.node in Cluster.call(p, Node, :list, [])
             end)
    end

    # Ten holders per node, sizes interleaved across nodes.
    holders =
      for {peer, base} <- [{a, 40}, {b, 45}, {c, 50}], pid <- spawn_holders(peer, base), do: pid

    %{a: a, b: b, c: c, bare: bare, holders: holders}
  end

  defp spawn_holders(peer, base), do: Cluster.call(peer, ProcHolder, :spawn_many, [10, base])

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)

  test "list, filter, sort and page across nodes", ctx do
    rows = page_all(ctx.a, %{"name" => @holders, "limit" => 7}, [])

    assert length(rows) == 30
    assert MapSet.new(rows, & &1.pid) == MapSet.new(ctx.holders, &ProcessRef.to_string/1)
    assert rows |> Enum.map(& &1.node) |> Enum.uniq() |> length() == 3
    memories = Enum.map(rows, & &1.memory)
    assert memories == Enum.sort(memories, :desc)

    for row <- rows do
      assert row.pid =~ "@" <> row.node
    end

    b = Atom.to_string(ctx.b.node)
    {:ok, only_b} = run(ctx.a, "process_list", %{"name" => @holders, "node" => b, "limit" => 100})
    assert length(only_b.processes) == 10
    assert Enum.all?(only_b.processes, &(&1.node == b))

    deaf = Cluster.call(ctx.c, ProcHolder, :spawn_deaf, [25])

    {:ok, by_queue} =
      run(ctx.b, "process_list", %{
        "sort_by" => "message_queue_len",
        "limit" => 1,
        "max_age_ms" => 0
      })

    assert [%{message_queue_len: 25} = top] = by_queue.processes
    assert top.pid == ProcessRef.to_string(deaf)

    {:ok, dist} = run(ctx.a, "process_distribution", %{})
    assert Enum.sort(dist.nodes) |> length() == 4
    assert Enum.any?(dist.cells, &(&1.node == b and &1.application == "kernel" and &1.count > 0))
  end

  test "info, send and kill on processes of other nodes", ctx do
    {:ok, echo} = Cluster.call(ctx.b, Echo, :start, [])
    echo_text = ProcessRef.to_string(echo)

    {:ok, info} = run(ctx.a, "get_process_info", %{"pid" => echo_text})
    assert info.node == Atom.to_string(ctx.b.node)
    assert info.type == :gen_server
    assert info.initial_call == "Elixir.TestApp.Echo:init/1"
    assert info.state_text =~ "seen: []"

    call = %{"$tuple" => [%{"$atom" => "echo"}, "hi"]}

    {:ok, reply} =
      run(ctx.a, "send_message", %{"pid" => echo_text, "mode" => "call", "message" => call})

    assert reply.reply == %{"$tuple" => [%{"$atom" => "echoed"}, "hi"]}

    {:ok, _} =
      run(ctx.c, "send_message", %{"pid" => echo_text, "mode" => "cast", "message" => "hello"})

    {:ok, _} = run(ctx.c, "send_message", %{"pid" => echo_text, "message" => [1, 2]})
    Process.sleep(100)

    assert Cluster.call(ctx.b, GenServer, :call, [echo, :seen]) == [
             {:cast, "hello"},
             {:info, [1, 2]}
           ]

    [victim | _] = Cluster.call(ctx.c, ProcHolder, :spawn_many, [1, 1])
    {:ok, killed} = run(ctx.a, "kill_process", %{"pid" => ProcessRef.to_string(victim)})
    assert killed.exited
    refute Cluster.call(ctx.c, Process, :alive?, [victim])

    {:error, gone} = run(ctx.a, "get_process_info", %{"pid" => ProcessRef.to_string(victim)})
    assert gone.code == :not_found

    code_server = Cluster.call(ctx.b, Process, :whereis, [:code_server])
    {:error, refused} = run(ctx.a, "kill_process", %{"pid" => ProcessRef.to_string(code_server)})
    assert refused.code == :forbidden
    assert Cluster.call(ctx.b, Process, :alive?, [code_server])
  end

  test "a node without ClusterScope is listed, agentless", ctx do
    sleeper = Cluster.call(ctx.bare, :erlang, :spawn, [:timer, :sleep, [:infinity]])
    bare = Atom.to_string(ctx.bare.node)
    refute Cluster.call(ctx.bare, :code, :is_loaded, [ClusterScope.Agent.Processes.Snapshots])

    # A fresh snapshot (an agentless node's is shared for max_age_ms, like
    # an agent's own, and an earlier test may have just read this one).
    {:ok, list} =
      run(ctx.a, "process_list", %{
        "node" => bare,
        "name" => "timer:sleep/1",
        "limit" => 10,
        "max_age_ms" => 0
      })

    assert list.agentless == [ctx.bare.node]
    assert [%{agentless: true, node: ^bare} = row] = list.processes
    assert row.pid == ProcessRef.to_string(sleeper)

    {:ok, all} = run(ctx.a, "process_list", %{"limit" => 5})
    assert ctx.bare.node in all.agentless
    assert length(all.nodes) == 4

    {:ok, info} = run(ctx.a, "get_process_info", %{"pid" => row.pid})
    assert info.current_function == "timer:sleep/1"

    # Redact was loaded beside Rows: a state read there is redacted there,
    # with a cookie only that node holds.
    assert Cluster.call(ctx.bare, :code, :is_loaded, [ClusterScope.Redact])
    ghost = :"ghost_#{System.unique_integer([:positive])}@127.0.0.97"
    ghost_cookie = :"barecookie_#{System.unique_integer([:positive])}_only"
    true = Cluster.call(ctx.bare, :erlang, :set_cookie, [ghost, ghost_cookie])
    state = [line: "-setcookie #{ghost_cookie}", password: "bare-secret-pw"]
    {:ok, agent} = Cluster.call(ctx.bare, Agent, :start, [Map, :new, [state]])
    {:ok, info} = run(ctx.a, "get_process_info", %{"pid" => ProcessRef.to_string(agent)})
    assert info.state_text =~ "-setcookie [REDACTED]"
    refute inspect(info, limit: :infinity) =~ Atom.to_string(ghost_cookie)
    refute inspect(info, limit: :infinity) =~ "bare-secret-pw"
  end

  defp page_all(peer, params, acc) do
    {:ok, page} = run(peer, "process_list", params)
    acc = acc ++ page.processes

    case page.next_cursor do
      nil -> acc
      cursor -> page_all(peer, Map.put(params, "cursor", cursor), acc)
    end
  end
end

defmodule ClusterScope.Procs.NodeDownTest do
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  test "a killed node gives a per-node error while the others answer" do
    [a, b, c] = Cluster.start(3)
    Cluster.kill(c)
    started = System.monotonic_time(:millisecond)

    {:ok, list} = Cluster.call(a, ClusterScope, :run, ["process_list", %{"limit" => 5}], 30_000)
    elapsed = System.monotonic_time(:millisecond) - started

    assert [%{node: node, status: status}] = list.node_errors
    assert node == c.node
    assert status in [:down, :timeout, :unreachable, :suspected, :error]
    assert Enum.sort(list.nodes) == Enum.sort([a.node, b.node])
    assert length(list.processes) == 5
    # Bounded by the node timeout (5 s), not a hang.
    assert elapsed < 15_000
  end
end
