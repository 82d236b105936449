defmodule ClusterScope.SandboxTest do
  # One node (CI): validation, placement through the NIF, and a sandbox's
  # life on this node through the operations.
  use ExUnit.Case, async: false

  alias ClusterScope.Sandbox
  alias ClusterScope.Sandbox.{Placement, Spec}
  alias ClusterScope.Test.SandboxWorker

  setup do
    previous = Application.get_all_env(:cluster_scope)
    Application.put_env(:cluster_scope, :startable_modules, [SandboxWorker])
    ClusterScope.Config.load()

    on_exit(fn ->
      for {:ok, %{sandboxes: list}} <- [Sandbox.list()], s <- list, do: Sandbox.destroy(s.id)

      for k <- [
            :startable_modules,
            :sandbox_max_processes,
            :sandbox_max_per_node,
            :sandbox_start_timeout_ms
          ] do
        case Keyword.fetch(previous, k) do
          {:ok, v} -> Application.put_env(:cluster_scope, k, v)
          :error -> Application.delete_env(:cluster_scope, k)
        end
      end

      ClusterScope.Config.load()
    end)

    :ok
  end

  defp child(extra \\ %{}),
    do: Map.merge(%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 3}, extra)

  defp fields({:error, {:invalid_params, _msg, %{fields: fields}}}),
    do: Enum.map(fields, & &1.field)

  describe "placement in the core" do
    test "the four strategies" do
      nodes = [{:a, 0.0, 0}, {:b, 0.0, 0}, {:c, 0.0, 0}]
      assert {:ok, [:b, :c, :a, :b]} = Placement.place(:round_robin, 4, nodes, 1)
      assert {:ok, [:a, :b, :c, :a]} = Placement.place(:pinned, 4, nodes, 5)
      assert {:ok, p} = Placement.place(:spread, 6, [{:a, 0.0, 4}, {:b, 0.0, 0}, {:c, 0.0, 0}])
      assert Enum.frequencies(p) == %{b: 3, c: 3}

      assert {:ok, p} =
               Placement.place(:least_loaded, 30, [{:a, 3.0, 0}, {:b, 0.0, 0}, {:c, 0.2, 0}])

      f = Enum.frequencies(p)
      assert Map.get(f, :a, 0) == 0 and f[:b] > f[:c]
    end

    test "bad input is an error naming the field" do
      assert {:error, {:invalid_option, "strategy: " <> _}} =
               ClusterScope.Native.placement_place("random", 1, [{0.0, 0}], 0, 1.0)

      assert {:error, {:empty, "nodes: " <> _}} =
               ClusterScope.Native.placement_place("spread", 1, [], 0, 1.0)

      assert {:error, {:invalid_argument, "nodes[1]: " <> _}} =
               ClusterScope.Native.placement_place("spread", 1, [{0.0, 0}, :x], 0, 1.0)

      assert {:error, {:invalid_argument, "count: " <> _}} =
               ClusterScope.Native.placement_place("spread", -1, [{0.0, 0}], 0, 1.0)
    end

    test "the dirty variant gives the same answer above 10,000" do
      nodes = [{:a, 0.0, 0}, {:b, 0.5, 0}]
      assert {:ok, p} = Placement.place(:least_loaded, 20_000, nodes)

      {:ok, idx} =
        ClusterScope.Native.placement_place(
          "least_loaded",
          20_000,
          [{0.0, 0}, {0.5, 0}],
          0,
          1 / 20_000
        )

      assert p == Enum.map(idx, &elem({:a, :b}, &1))
    end
  end

  describe "validation" do
    test "every bad field is named and nothing starts" do
      before = length(ClusterScope.Sandbox.Agent.groups())

      assert fields(Sandbox.create(%{name: "bad name!", children: [child()]})) == ["name"]

      assert fields(Sandbox.create(%{name: "x", children: [child(%{"module" => "No.Such.Mod"})]})) ==
               ["children[0].module"]

      # Loaded but not allowed by the host.
      {:error, {:invalid_params, msg, _}} =
        Sandbox.create(%{name: "x", children: [child(%{"module" => "Agent"})]})

      assert msg =~ "startable_modules"

      assert fields(Sandbox.create(%{name: "x", children: [child(%{"function" => "nope"})]})) ==
               ["children[0].function"]

      assert fields(Sandbox.create(%{name: "x", strategy: "random", children: [child()]})) ==
               ["strategy"]

      assert fields(Sandbox.create(%{name: "x", strategy: :pinned, children: [child()]})) ==
               ["nodes"]

      assert fields(
               Sandbox.create(%{name: "x", nodes: [:"nobody@127.9.9.9"], children: [child()]})
             ) ==
               ["nodes"]

      assert fields(Sandbox.create(%{name: "x", children: []})) == ["children"]

      assert fields(Sandbox.create(%{name: "x", children: [child(%{"count" => 0})]})) ==
               ["children[0].count"]

      assert length(ClusterScope.Sandbox.Agent.groups()) == before
    end

    test "the host's limits are clear errors naming the option" do
      Application.put_env(:cluster_scope, :sandbox_max_processes, 5)
      ClusterScope.Config.load()

      {:error, {:invalid_params, msg, %{fields: [%{field: "children"}]}}} =
        Sandbox.create(%{name: "big", children: [child(%{"count" => 6})]})

      assert msg =~ "sandbox_max_processes"

      Application.put_env(:cluster_scope, :sandbox_max_per_node, 1)
      ClusterScope.Config.load()
      assert {:ok, _} = Sandbox.create(%{name: "one", children: [child(%{"count" => 1})]})
      {:error, {_, msg, _}} = Sandbox.create(%{name: "two", children: [child(%{"count" => 1})]})
      assert msg =~ "sandbox_max_per_node"
      assert [%{name: "one"}] = elem(Sandbox.list(), 1).sandboxes
    end

    test "config options are validated by name" do
      assert {:error, _, errors} = ClusterScope.Config.validate(sandbox_max_processes: 0)
      assert Keyword.has_key?(errors, :sandbox_max_processes)
      assert {:error, _, errors} = ClusterScope.Config.validate(sandbox_max_per_node: "x")
      assert Keyword.has_key?(errors, :sandbox_max_per_node)
      assert {:error, config, errors} = ClusterScope.Config.validate(sandbox_start_timeout_ms: 5)
      assert Keyword.has_key?(errors, :sandbox_start_timeout_ms)
      assert config.sandbox_start_timeout_ms == 30_000

      assert %{sandbox_max_processes: 10_000, sandbox_max_per_node: 100} =
               ClusterScope.Config.defaults()
    end

    test "Spec reads Elixir terms too" do
      assert {:ok, d} =
               Spec.definition(%{
                 name: "e",
                 children: [%{module: SandboxWorker, args: [{:x, 1}], count: 2}]
               })

      assert [%{module: SandboxWorker, function: :start_link, args: [{:x, 1}], count: 2}] =
               d.children

      assert d.total == 2
    end
  end

  describe "on this node" do
    test "create, info with processes and status, topology from a child, duplicate name, destroy" do
      assert {:ok, created} =
               ClusterScope.run("create_sandbox", %{
                 "name" => "local",
                 "children" => [child(%{"args" => [%{"$atom" => "hello"}]})]
               })

      assert created.processes == 3
      assert created.nodes == %{node() => 3}

      # The sandbox's events join the cluster events.
      assert eventually(fn ->
               {:ok, ev} = ClusterScope.run("cluster_events", %{"limit" => 1000})

               Enum.any?(
                 ev.events,
                 &(&1.type == :sandbox_created and &1.details.id == created.id)
               )
             end)

      assert {:error, %{code: :invalid_params} = e} =
               ClusterScope.run("create_sandbox", %{"name" => "local", "children" => [child()]})

      assert e.message =~ "exists"

      assert {:ok, info} = ClusterScope.run("get_sandbox_info", %{"id" => "local"})
      [{_node, part}] = Map.to_list(info.nodes)
      assert length(part.processes) == 3
      assert Enum.all?(part.processes, &(&1.status in [:waiting, :running, :runnable]))

      # A child knows its sandbox (read at its init, from its parent).
      {:ok, pid} = ClusterScope.ProcessRef.parse(hd(part.processes).pid)
      pid = elem(ClusterScope.Procs.Control.pid(pid), 1)
      topo = GenServer.call(pid, :topology)
      assert topo.name == "local" and topo.nodes == %{node() => 3}
      assert Sandbox.sandbox_of(pid).id == created.id
      assert Sandbox.sandbox_of(self()) == nil

      # A crashed child is restarted in its slot.
      Process.exit(pid, :kill)

      assert eventually(fn ->
               {:ok, i} = Sandbox.info("local")
               ps = i.nodes[node()].processes

               length(ps) == 3 and
                 Enum.all?(ps, &(&1.pid != ClusterScope.ProcessRef.to_string(pid)))
             end)

      assert {:ok, %{sandboxes: [%{name: "local", running: 3}]}} =
               ClusterScope.run("list_sandboxes", %{})

      # Nowhere to move to on one node: a named error, nothing changed.
      assert {:error, {:invalid_params, "to: " <> _, _}} = Sandbox.migrate("local", node())
      assert {:ok, %{running: 3, epoch: 1}} = Sandbox.info("local")

      pids = for p <- elem(Sandbox.info("local"), 1).nodes[node()].processes, do: p.pid

      assert {:ok, d} = ClusterScope.run("destroy_sandbox", %{"id" => "local"})
      assert d.stopped == 3 and d.pending_nodes == []

      assert {:error, %{code: :not_found}} =
               ClusterScope.run("get_sandbox_info", %{"id" => "local"})

      assert ClusterScope.Sandbox.Manager.tombstoned?(created.id)

      for text <- pids do
        {:ok, ref} = ClusterScope.ProcessRef.parse(text)
        refute match?({:ok, p} when is_pid(p) and node(p) == node(), alive(ref))
      end
    end

    test "a child that fails to start leaves nothing" do
      before = length(ClusterScope.Sandbox.Agent.groups())

      assert {:error, {:unavailable, msg, _}} =
               Sandbox.create(%{
                 name: "fails",
                 children: [
                   %{module: SandboxWorker, count: 2},
                   %{module: SandboxWorker, args: [{:fail_on, node()}]}
                 ]
               })

      assert msg =~ "nothing of it is left"
      assert length(ClusterScope.Sandbox.Agent.groups()) == before
      assert {:ok, %{sandboxes: []}} = Sandbox.list()
    end

    test "a child whose start hangs: the create fails at the deadline, nothing is left, the node supervisor answers" do
      Application.put_env(:cluster_scope, :sandbox_start_timeout_ms, 300)
      ClusterScope.Config.load()
      before = length(ClusterScope.Sandbox.Agent.groups())

      assert {:error, {:unavailable, msg, _}} =
               Sandbox.create(%{
                 name: "hangs",
                 children: [
                   %{module: SandboxWorker, count: 2},
                   %{module: SandboxWorker, args: [{:hang_on, node(), self()}]}
                 ]
               })

      assert msg =~ "did not start within 300 ms"
      assert_receive {:hanging, hung}
      assert eventually(fn -> not Process.alive?(hung) end)
      assert length(ClusterScope.Sandbox.Agent.groups()) == before
      assert {:ok, _} = Sandbox.create(%{name: "after", children: [%{module: SandboxWorker}]})
    end

    test "a child that keeps crashing is marked failed after 5 restarts; the rest runs on" do
      assert {:ok, s} =
               Sandbox.create(%{
                 name: "crashy",
                 children: [
                   %{module: SandboxWorker, count: 2},
                   %{module: SandboxWorker, args: [:crash_soon]}
                 ]
               })

      assert eventually(fn ->
               {:ok, i} = Sandbox.info(s.id)
               i.failed == 1
             end)

      {:ok, i} = Sandbox.info(s.id)
      assert i.running == 2
      [failed] = Enum.filter(i.nodes[node()].processes, &(&1.status == :failed))
      assert failed.slot == 2 and failed.reason =~ "restarted 5 times"
    end

    test "mutating operations are control scope" do
      for name <- ~w(create_sandbox migrate_sandbox destroy_sandbox) do
        {:ok, meta} = ClusterScope.Operation.Registry.lookup(name)
        assert meta.scope == :control, name
      end

      for name <- ~w(list_sandboxes get_sandbox_info) do
        {:ok, meta} = ClusterScope.Operation.Registry.lookup(name)
        assert meta.scope == :read, name
      end
    end
  end

  defp alive(ref) do
    case ClusterScope.Procs.Control.pid(ref) do
      {:ok, pid} -> if Process.alive?(pid), do: {:ok, pid}, else: :dead
      other -> other
    end
  end

  defp eventually(fun, tries \\ 60) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(50) && eventually(fun, tries - 1)
    end
  end

  test "a dry run answers the placement and starts nothing" do
    before = :erlang.system_info(:process_count)

    assert {:ok, plan} =
             ClusterScope.run("create_sandbox", %{
               "name" => "plan",
               "children" => [child(%{"count" => 4})],
               "strategy" => "round_robin",
               "dry_run" => true
             })

    assert plan.planned == true and plan.simulated == false
    assert plan.nodes == %{node() => 4}
    assert plan.placement_reason =~ "round robin"
    assert {:ok, %{sandboxes: []}} = Sandbox.list()
    assert :erlang.system_info(:process_count) <= before + 2

    # The same validation as a real create.
    assert {:error, %{code: :invalid_params}} =
             ClusterScope.run("create_sandbox", %{
               "name" => "plan",
               "children" => [%{"module" => "Task", "count" => 1}],
               "dry_run" => true
             })
  end

  test "in simulated mode a create is a plan over the up virtual nodes" do
    ClusterScope.Test.ModeSwitch.allow()
    {:ok, _} = ClusterScope.Mode.set(:simulated, nodes: 5)
    virtual = for {n, :up} <- ClusterScope.Simulator.nodes(), do: n
    assert length(virtual) == 5
    :ok = ClusterScope.Simulator.fail(hd(virtual))
    up = tl(virtual)

    assert {:ok, plan} =
             ClusterScope.run("create_sandbox", %{
               "name" => "sim",
               "children" => [child(%{"count" => 8})],
               "strategy" => "spread"
             })

    assert plan.planned and plan.simulated
    assert Enum.sort(Map.keys(plan.nodes)) == Enum.sort(up)
    assert Enum.sort(Map.values(plan.nodes)) == [2, 2, 2, 2]
    assert {:ok, %{sandboxes: []}} = Sandbox.list()

    # A failed virtual node is refused by name.
    assert {:error, %{code: :invalid_params, message: message}} =
             ClusterScope.run("create_sandbox", %{
               "name" => "sim2",
               "children" => [child()],
               "strategy" => "pinned",
               "nodes" => [Atom.to_string(hd(virtual))]
             })

    assert message =~ "not an up simulated node"
  end
end
