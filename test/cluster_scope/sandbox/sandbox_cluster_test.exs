defmodule ClusterScope.Sandbox.ClusterTest do
  # Sandboxes on real peers: placement, a killed node's processes restarted
  # on survivors, destroy on every node, all-or-nothing creation, and (with
  # :chaos) a node cut off during destroy cleaned when it reconnects.
  use ExUnit.Case, async: false

  alias ClusterScope.Sandbox.Agent, as: SAgent
  alias ClusterScope.Test.{Cluster, SandboxWorker}

  @moduletag :cluster
  @moduletag timeout: 240_000

  setup do
    peers = Cluster.start(3)

    for p <- peers, do: :ok = Cluster.put_config(p, :startable_modules, [SandboxWorker])

    [a, b, c] = Enum.sort_by(peers, & &1.node)
    %{a: a, b: b, c: c, peers: [a, b, c]}
  end

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)

  defp create(peer, params) do
    run(
      peer,
      "create_sandbox",
      Map.merge(
        %{"children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 6}]},
        params
      )
    )
  end

  # What `peer` itself runs of sandbox `id`: {placed here, running}.
  defp local(peer, id) do
    case Cluster.call(peer, SAgent, :info, [id]) do
      {:ok, nil} -> {0, 0}
      {:ok, part} -> {part.placed_here, part.running}
    end
  end

  defp pids(peer, id) do
    {:ok, part} = Cluster.call(peer, SAgent, :info, [id])

    for p <- part.processes do
      {:ok, ref} = ClusterScope.ProcessRef.parse(p.pid)
      ref
    end
  end

  defp poll(timeout, fun), do: Cluster.poll(System.monotonic_time(:millisecond) + timeout, fun)

  test "placement is honoured on every node and explained", %{a: a, b: b, c: c} do
    {:ok, rr} = create(a, %{"name" => "rr", "strategy" => "round_robin"})
    assert rr.nodes == %{a.node => 2, b.node => 2, c.node => 2}
    assert rr.placement_reason =~ "round robin"
    for p <- [a, b, c], do: assert(local(p, rr.id) == {2, 2})

    # A process of the sandbox knows its sandbox and where it runs.
    {:ok, pid} = Cluster.call(b, ClusterScope.Procs.Control, :pid, [hd(pids(b, rr.id))])
    topo = Cluster.call(b, GenServer, :call, [pid, :topology])
    assert topo.id == rr.id and topo.nodes == rr.nodes
    assert Cluster.call(b, ClusterScope.Sandbox, :sandbox_of, [pid]).name == "rr"

    {:ok, pin} =
      create(a, %{
        "name" => "pin",
        "strategy" => "pinned",
        "nodes" => [to_string(b.node), to_string(c.node)]
      })

    assert pin.nodes == %{b.node => 3, c.node => 3}
    assert local(a, pin.id) == {0, 0}
    assert local(b, pin.id) == {3, 3} and local(c, pin.id) == {3, 3}

    {:ok, ll} = create(a, %{"name" => "ll", "strategy" => "least_loaded"})
    assert ll.placement_reason =~ "load figures"
    assert Enum.sum(Map.values(ll.nodes)) == 6

    # Info from another node shows the processes per node with status.
    {:ok, info} = run(c, "get_sandbox_info", %{"id" => "rr"})
    assert map_size(info.nodes) == 3

    for {_n, part} <- info.nodes do
      assert length(part.processes) == 2
      assert Enum.all?(part.processes, &(&1.status in [:waiting, :running, :runnable]))
    end

    {:ok, list} = run(b, "list_sandboxes", %{})
    assert Enum.map(list.sandboxes, & &1.name) == ["ll", "pin", "rr"]
  end

  test "the process list filters by sandbox: exactly its processes, from every node", %{
    a: a,
    b: b,
    c: c
  } do
    {:ok, sb} = create(a, %{"name" => "seen", "strategy" => "round_robin"})
    {:ok, other} = create(b, %{"name" => "unseen", "strategy" => "round_robin"})
    expected = Enum.flat_map([a, b, c], &pids(&1, sb.id)) |> Enum.map(&to_string/1) |> Enum.sort()
    assert length(expected) == 6

    for by <- ["seen", sb.id] do
      {:ok, list} = run(c, "process_list", %{"sandbox" => by, "limit" => 100})
      assert Enum.sort(Enum.map(list.processes, & &1.pid)) == expected
      assert list.node_errors == []
      assert Enum.all?(list.processes, &(&1.module == "Elixir.ClusterScope.Test.SandboxWorker"))
    end

    # Pages of two: three pages, every process once.
    paged =
      Stream.unfold(%{"sandbox" => "seen", "limit" => 2}, fn
        nil ->
          nil

        params ->
          {:ok, page} = run(a, "process_list", params)
          next = page.next_cursor && Map.put(params, "cursor", page.next_cursor)
          {Enum.map(page.processes, & &1.pid), next}
      end)
      |> Enum.to_list()
      |> List.flatten()

    assert Enum.sort(paged) == expected
    refute Enum.any?(paged, &(&1 in Enum.map(pids(b, other.id), fn r -> to_string(r) end)))

    assert {:error, %{code: :not_found}} = run(a, "process_list", %{"sandbox" => "nope"})

    assert {:error, %{code: :invalid_params}} =
             run(a, "process_list", %{"sandbox" => "seen", "window_ms" => 100})
  end

  test "least loaded keeps processes off a busy node", %{a: a, b: b, c: c} do
    schedulers = Cluster.call(b, :erlang, :system_info, [:schedulers_online])
    spinners = Cluster.call(b, SandboxWorker, :spin, [schedulers * 2])

    # Wait for b's health monitor to see it (samples every second).
    assert poll(10_000, fn ->
             {:ok, h} = Cluster.call(b, ClusterScope.Health, :local_health, [])
             (h.summary[:scheduler_utilization_pct] || 0) > 50
           end)

    {:ok, s} =
      create(a, %{
        "name" => "ll",
        "strategy" => "least_loaded",
        "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 30}]
      })

    for pid <- spinners, do: Cluster.call(b, Process, :exit, [pid, :kill])
    on_b = Map.get(s.nodes, b.node, 0)

    assert on_b < Map.get(s.nodes, a.node, 0) and on_b < Map.get(s.nodes, c.node, 0),
           s.placement_reason

    assert s.placement_reason =~ to_string(b.node)
  end

  test "a killed node's processes restart on the survivors within a few seconds", %{
    a: a,
    b: b,
    c: c
  } do
    {:ok, s} =
      create(a, %{
        "name" => "fo",
        "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 30}]
      })

    assert s.nodes == %{a.node => 10, b.node => 10, c.node => 10}

    Cluster.kill(c)

    assert poll(5_000, fn ->
             {pa, ra} = local(a, s.id)
             {pb, rb} = local(b, s.id)
             pa + pb == 30 and ra + rb == 30
           end),
           "survivors run #{inspect({local(a, s.id), local(b, s.id)})}"

    {:ok, info} = run(b, "get_sandbox_info", %{"id" => "fo"})
    refute Map.has_key?(info.nodes, c.node)
    assert info.running == 30 and info.epoch == 2

    assert poll(2_000, fn ->
             a
             |> Cluster.call(ClusterScope.Sandbox.Manager, :events, [])
             |> Enum.any?(&(&1.type == :sandbox_restarted_elsewhere and &1.node == c.node))
           end)

    # Migrate moves the processes of a onto b on demand.
    {on_a, _} = local(a, s.id)
    assert on_a > 0
    {:ok, m} = run(b, "migrate_sandbox", %{"id" => "fo", "from" => to_string(a.node)})
    assert m.moved == on_a and m.nodes == %{b.node => 30}
    assert local(a, s.id) == {0, 0} and local(b, s.id) == {30, 30}
  end

  test "a migration a target refuses is rolled back", %{a: a, b: b, c: c} do
    {:ok, m} =
      create(a, %{
        "name" => "m",
        "strategy" => "pinned",
        "nodes" => [to_string(a.node), to_string(b.node)]
      })

    {:ok, _} =
      create(a, %{"name" => "other", "strategy" => "pinned", "nodes" => [to_string(c.node)]})

    :ok = Cluster.put_config(c, :sandbox_max_per_node, 1)

    {:error, e} =
      run(b, "migrate_sandbox", %{
        "id" => "m",
        "from" => to_string(a.node),
        "to" => [to_string(c.node)]
      })

    assert e.message =~ "rolled back (the previous placement is back)"
    assert e.message =~ "sandbox_max_per_node"
    assert local(a, m.id) == {3, 3} and local(b, m.id) == {3, 3} and local(c, m.id) == {0, 0}

    {:ok, moved} =
      run(b, "migrate_sandbox", %{
        "id" => "m",
        "from" => to_string(a.node),
        "to" => [to_string(b.node)]
      })

    assert moved.moved == 3 and local(b, m.id) == {6, 6} and local(a, m.id) == {0, 0}
  end

  test "a nodedown the coordinator's manager missed (it was restarting) is caught by its next pass",
       %{a: a, b: b, c: c} do
    {:ok, s} = create(a, %{"name" => "missed"})
    mgr = Cluster.call(a, Process, :whereis, [ClusterScope.Sandbox.Manager])
    :ok = Cluster.call(a, :sys, :suspend, [mgr])

    # a (the coordinator: smallest name) misses c's nodedown: its manager
    # is suspended, then killed; b is not the coordinator.
    Cluster.kill(c)
    assert poll(5_000, fn -> c.node not in Cluster.call(a, Node, :list, []) end)
    true = Cluster.call(a, Process, :exit, [mgr, :kill])

    assert poll(5_000, fn ->
             {pa, ra} = local(a, s.id)
             {pb, rb} = local(b, s.id)
             pa + pb == 6 and ra + rb == 6
           end)
  end

  test "restart: none leaves a lost node's processes lost", %{a: a, b: b, c: c} do
    {:ok, s} = create(a, %{"name" => "none", "restart" => "none"})
    Cluster.kill(c)
    Process.sleep(1_500)
    assert local(a, s.id) == {2, 2} and local(b, s.id) == {2, 2}

    # On demand: migrate from the node gone starts them again on a and b.
    {:ok, m} = run(b, "migrate_sandbox", %{"id" => "none", "from" => to_string(c.node)})
    assert m.moved == 2 and m.nodes == %{a.node => 3, b.node => 3}
    assert local(a, s.id) == {3, 3} and local(b, s.id) == {3, 3}
  end

  test "destroy removes the sandbox from every node", %{a: a, b: b, c: c} do
    {:ok, s} = create(a, %{"name" => "gone"})
    before = for p <- [a, b, c], do: {p, pids(p, s.id)}

    {:ok, d} = run(b, "destroy_sandbox", %{"id" => "gone"})
    assert d.stopped == 6 and d.pending_nodes == []

    for {p, refs} <- before do
      assert Cluster.call(p, SAgent, :groups, []) == []

      for ref <- refs do
        {:ok, pid} = Cluster.call(p, ClusterScope.Procs.Control, :pid, [ref])
        refute Cluster.call(p, Process, :alive?, [pid])
      end
    end

    assert {:error, %{code: :not_found}} = run(a, "get_sandbox_info", %{"id" => "gone"})
    # The name can be used again; the tombstone is the old id's.
    assert {:ok, again} = create(c, %{"name" => "gone"})
    assert again.id != s.id
  end

  test "a restarted manager loses nothing: parts run on, tombstones come back from the others",
       %{a: a, b: b, c: c} do
    {:ok, keep} = create(a, %{"name" => "keep"})
    {:ok, old} = create(a, %{"name" => "old"})
    {:ok, _} = run(a, "destroy_sandbox", %{"id" => "old"})

    # Two of three at once: their tombstones come back from a (with every
    # manager restarted at once, the tombstones would be lost: they are
    # kept only by the managers).
    for p <- [b, c] do
      mgr = Cluster.call(p, Process, :whereis, [ClusterScope.Sandbox.Manager])
      true = Cluster.call(p, Process, :exit, [mgr, :kill])
    end

    assert poll(5_000, fn ->
             Enum.all?([a, b, c], fn p ->
               Cluster.call(p, ClusterScope.Sandbox.Manager, :tombstoned?, [old.id])
             end)
           end)

    for p <- [a, b, c], do: assert(local(p, keep.id) == {2, 2})
    {:ok, list} = run(c, "list_sandboxes", %{})
    assert [%{name: "keep", running: 6}] = list.sandboxes
  end

  test "bad input leaves no half-made sandbox on any node", %{a: a, b: b, c: c} do
    # b refuses its part: the parts a and c started are removed.
    {:error, e} =
      run(a, "create_sandbox", %{
        "name" => "half",
        "children" => [
          %{"module" => "ClusterScope.Test.SandboxWorker", "count" => 3},
          %{
            "module" => "ClusterScope.Test.SandboxWorker",
            "count" => 3,
            "args" => [%{"$tuple" => [%{"$atom" => "fail_on"}, %{"$atom" => to_string(b.node)}]}]
          }
        ]
      })

    assert e.code == :unavailable and e.message =~ to_string(b.node)
    for p <- [a, b, c], do: assert(Cluster.call(p, SAgent, :groups, []) == [])

    {:error, e} = create(a, %{"name" => "x", "children" => [%{"module" => "No.Such"}]})
    assert e.code == :invalid_params and e.message =~ "children[0].module"

    {:error, e} = create(a, %{"name" => "x", "children" => [%{"module" => "GenServer"}]})
    assert e.message =~ "startable_modules"

    {:error, e} = create(a, %{"name" => "x", "strategy" => "random"})
    assert e.code == :invalid_params and e.message =~ "strategy"

    {:error, e} = create(a, %{"name" => "x", "nodes" => ["nobody@127.9.9.9"]})
    assert e.code == :invalid_params and e.message =~ "nodes"

    {:ok, _} = create(a, %{"name" => "dup"})
    {:error, e} = create(b, %{"name" => "dup"})
    assert e.code == :invalid_params and e.message =~ "exists"
    assert length(Cluster.call(c, SAgent, :groups, [])) == 1
  end

  @tag :chaos
  test "a node cut off during destroy removes its part when it reconnects",
       %{a: a, b: b, c: c} = ctx do
    {:ok, s} = create(a, %{"name" => "cut"})
    c_refs = pids(c, s.id)

    Cluster.cut_all([{a, c}, {b, c}])

    # Destroy while c cannot be reached (a Fanout call to it times out, or
    # the link is already down): c is pending.
    {:ok, d} = run(a, "destroy_sandbox", %{"id" => "cut"})
    assert local(a, s.id) == {0, 0} and local(b, s.id) == {0, 0}
    # c, alone on its side, still runs its part and did not take the others'.
    assert local(c, s.id) == {2, 2}
    assert c.node in d.pending_nodes or not Enum.member?(d.nodes, c.node)

    # Heal only once the links are gone (tick time): before that, a request
    # held in TCP retransmission could still reach c after the heal.
    assert poll(20_000, fn ->
             c.node not in Cluster.call(a, Node, :list, []) and
               c.node not in Cluster.call(b, Node, :list, []) and
               Cluster.call(c, Node, :list, []) == []
           end)

    assert local(c, s.id) == {2, 2}
    Cluster.heal_all()
    Cluster.reconnect(ctx.peers)

    assert poll(15_000, fn -> Cluster.call(c, SAgent, :groups, []) == [] end),
           "c still runs #{inspect(local(c, s.id))}"

    for ref <- c_refs do
      {:ok, pid} = Cluster.call(c, ClusterScope.Procs.Control, :pid, [ref])
      refute Cluster.call(c, Process, :alive?, [pid])
    end

    # Recorded by the task that removed the part, just after.
    assert poll(2_000, fn ->
             c
             |> Cluster.call(ClusterScope.Sandbox.Manager, :events, [])
             |> Enum.any?(&(&1.type == :sandbox_orphan_cleaned and &1.details.id == s.id))
           end)
  end

  @tag :chaos
  test "after a split heals every process runs once: the majority restarted them, the cut node stops its own",
       %{a: a, b: b, c: c} = ctx do
    {:ok, s} =
      create(a, %{
        "name" => "split",
        "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 9}]
      })

    assert local(c, s.id) == {3, 3}

    Cluster.cut_all([{a, c}, {b, c}])

    # The majority side (a, b) restarts c's three once the tick time says c is gone.
    assert poll(20_000, fn ->
             {pa, ra} = local(a, s.id)
             {pb, rb} = local(b, s.id)
             pa + pb == 9 and ra + rb == 9
           end)

    # c, alone, keeps its own and starts nothing else.
    assert local(c, s.id) == {3, 3}

    Cluster.heal_all()
    Cluster.reconnect(ctx.peers)

    # The newest placement wins on every node: nine run in all, once each
    # (global may cut and restore links while c rejoins, with more
    # failovers on the way: the epochs settle them).
    assert poll(15_000, fn ->
             Enum.sum(for p <- [a, b, c], do: elem(local(p, s.id), 1)) == 9 and
               Enum.sum(for p <- [a, b, c], do: elem(local(p, s.id), 0)) == 9
           end),
           "running: #{inspect(for p <- [a, b, c], do: local(p, s.id))}"

    {:ok, info} = run(a, "get_sandbox_info", %{"id" => "split"})
    assert info.running == 9
  end

  test "two nodes killed at once: their processes end up on the two left, once each" do
    peers = Cluster.start(4)

    for p <- peers, do: :ok = Cluster.put_config(p, :startable_modules, [SandboxWorker])

    [a, b, c, d] = Enum.sort_by(peers, & &1.node)
    nodes = Enum.map(peers, & &1.node)

    poll(10_000, fn ->
      Enum.all?(nodes, &(&1 in Cluster.call(a, ClusterScope.Cluster.Heartbeat, :agent_nodes, [])))
    end)

    {:ok, s} =
      create(a, %{
        "name" => "two",
        "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 40}]
      })

    assert map_size(s.nodes) == 4

    Cluster.kill(c)
    Cluster.kill(d)

    assert poll(8_000, fn ->
             {pa, ra} = local(a, s.id)
             {pb, rb} = local(b, s.id)
             pa + pb == 40 and ra + rb == 40
           end),
           "a and b run #{inspect({local(a, s.id), local(b, s.id)})}"

    {:ok, info} = run(b, "get_sandbox_info", %{"id" => "two"})
    assert info.running == 40
    assert Enum.sort(Map.keys(info.nodes)) == Enum.sort([a.node, b.node])
  end
end
