defmodule ClusterScope.NodeViews.SupervisionTest do
  # The supervision view on this node: lazy expansion, paging, flags,
  # stuck supervisors answered within the deadline, recent restarts from
  # the logger handler, and bad roots.
  use ExUnit.Case, async: false

  alias ClusterScope.NodeViews.{Supervision, SupervisorReports}
  alias ClusterScope.Test.SupTree

  setup do
    name = :"cs_sup_tree_#{System.unique_integer([:positive])}"
    sup = SupTree.start(name, 7)
    on_exit(fn -> SupTree.stop(name) end)
    %{name: name, sup: sup}
  end

  defp by_id(children, id), do: Enum.find(children, &(&1.id == id))

  test "depth 1 lists the root's children with flags, counts and statuses", %{
    name: name,
    sup: sup
  } do
    assert {:ok, tree} = Supervision.tree({:name, Atom.to_string(name)}, %{})
    assert tree.pid == sup
    assert tree.found_by == {:registered, name}
    assert tree.flags == %{strategy: :one_for_one, intensity: 7, period: 9}
    assert tree.counts.specs == 3 and tree.counts.supervisors == 2
    assert tree.expansion == :ok

    worker = by_id(tree.children, ":worker")
    assert worker.type == :worker and worker.status == :running and is_pid(worker.pid)

    # Depth 1: the child supervisors are listed, not expanded.
    inner = by_id(tree.children, ":inner")
    assert inner.type == :supervisor and inner.expanded == false
    refute Map.has_key?(inner, :children)
  end

  test "depth 2 expands child supervisors, with their own flags", %{sup: sup} do
    assert {:ok, tree} = Supervision.tree({:pid, sup}, %{depth: 2})

    inner = by_id(tree.children, ":inner")
    assert inner.expanded and inner.expansion == :ok
    assert inner.flags.strategy == :one_for_all
    assert Enum.map(inner.children, & &1.id) |> Enum.sort() == [":a", ":b"]

    dynamic = by_id(tree.children, ":dynamic")
    assert dynamic.flags == %{strategy: :one_for_one, intensity: 11, period: 5}
    assert dynamic.counts.active == 7
    assert length(dynamic.children) == 7
  end

  test "children are paged: limit and next_offset, no child twice", %{sup: sup} do
    dyn = SupTree.child(sup, :dynamic)

    pages =
      Stream.unfold(0, fn
        nil ->
          nil

        offset ->
          {:ok, page} = Supervision.tree({:pid, dyn}, %{limit: 3, offset: offset})
          {page, page.next_offset}
      end)
      |> Enum.to_list()

    assert Enum.map(pages, &length(&1.children)) == [3, 3, 1]
    pids = Enum.flat_map(pages, fn p -> Enum.map(p.children, & &1.pid) end)
    assert length(Enum.uniq(pids)) == 7
  end

  test "a supervisor with more children than the listing cap gives its counts only", %{
    sup: sup
  } do
    dyn = SupTree.child(sup, :dynamic)
    assert {:ok, tree} = Supervision.tree({:pid, dyn}, %{max_listed: 5})
    assert tree.children == nil and tree.children_error == :too_many_children
    assert tree.counts.active == 7 and tree.flags.strategy == :one_for_one
    assert {:ok, %{children: [_ | _]}} = Supervision.tree({:pid, dyn}, %{max_listed: 7})
  end

  test "a suspended child supervisor is reported stuck within the deadline", %{sup: sup} do
    inner = SupTree.child(sup, :inner)
    :ok = :sys.suspend(inner)

    try do
      started = System.monotonic_time(:millisecond)
      assert {:ok, tree} = Supervision.tree({:pid, sup}, %{depth: 3, call_timeout_ms: 300})
      elapsed = System.monotonic_time(:millisecond) - started

      assert by_id(tree.children, ":inner").expansion == :stuck
      # The other child supervisor was expanded meanwhile.
      assert by_id(tree.children, ":dynamic").expansion == :ok
      # Two levels at most one deadline each: generous bound.
      assert elapsed < 3_000

      # The stuck one as the root: an error, not a wait.
      assert {:error, {:stuck, message}} =
               Supervision.tree({:pid, inner}, %{call_timeout_ms: 200})

      assert message =~ "did not answer within 200 ms"
    after
      :sys.resume(inner)
    end
  end

  test "a supervisor blocked in a child's init is stuck, its parent answers", %{sup: sup} do
    inner = SupTree.child(sup, :inner)
    test = self()

    slow = %{
      id: :slow,
      start:
        {Agent, :start_link,
         [
           fn ->
             send(test, {:in_init, self()})

             receive do
               :go -> :ok
             end
           end
         ]}
    }

    starter = spawn(fn -> Supervisor.start_child(inner, slow) end)
    assert_receive {:in_init, slow_pid}, 2_000

    try do
      {elapsed, answer} =
        :timer.tc(fn -> Supervision.tree({:pid, sup}, %{depth: 2, call_timeout_ms: 300}) end)

      assert {:ok, tree} = answer
      assert by_id(tree.children, ":inner").expansion == :stuck
      assert elapsed < 3_000_000
    after
      send(slow_pid, :go)
      Process.exit(starter, :kill)
    end

    # Once the child's init returns, the supervisor answers again.
    assert poll(fn ->
             match?(
               {:ok, %{counts: %{specs: 3}}},
               Supervision.tree({:pid, inner}, %{call_timeout_ms: 300})
             )
           end)
  end

  test "recent restarts come from the bounded logger handler", %{sup: sup} do
    assert SupervisorReports.installed?()
    worker = SupTree.child(sup, :worker)
    Process.exit(worker, :kill)

    assert poll(fn ->
             match?(
               {:ok, %{recent_restarts: %{count: 1}}},
               Supervision.tree({:pid, sup}, %{})
             )
           end)

    {:ok, tree} = Supervision.tree({:pid, sup}, %{})
    assert [report] = tree.recent_restarts.recent
    assert report.kind == :child_terminated
    assert report.child_id == ":worker"
    assert report.child_pid == worker
    assert report.reason_kind == ":killed"

    # A child supervisor that restarted its children shows it too.
    inner = SupTree.child(sup, :inner)
    Process.exit(SupTree.child(inner, :a), :boom)
    assert poll(fn -> SupervisorReports.for_supervisor(inner) != nil end)
    {:ok, tree} = Supervision.tree({:pid, sup}, %{depth: 1})

    assert %{count: 1, recent: [%{reason_kind: ":boom"}]} =
             by_id(tree.children, ":inner").recent_restarts
  end

  test "the ring is bounded and the handler removable" do
    {:ok, sup} = Supervisor.start_link([], strategy: :one_for_one, max_restarts: 1_000)

    for i <- 1..(SupervisorReports.capacity() + 20) do
      {:ok, pid} =
        Supervisor.start_child(sup, %{id: i, start: {Agent, :start_link, [fn -> i end]}})

      Process.exit(pid, :kill)
    end

    assert poll(fn ->
             SupervisorReports.for_supervisor(sup)[:count] == SupervisorReports.capacity() + 20
           end)

    assert length(SupervisorReports.recent()) == SupervisorReports.capacity()

    SupervisorReports.uninstall()

    try do
      refute SupervisorReports.installed?()

      {:ok, pid} =
        Supervisor.start_child(sup, %{id: :x, start: {Agent, :start_link, [fn -> 0 end]}})

      Process.exit(pid, :kill)
      Process.sleep(200)
      assert SupervisorReports.for_supervisor(sup).count == SupervisorReports.capacity() + 20
    after
      assert SupervisorReports.install() == :ok
    end

    assert SupervisorReports.installed?()
    Supervisor.stop(sup)
  end

  test "the reports server restarted (killed: no terminate) keeps the handler working", %{
    sup: sup
  } do
    old = Process.whereis(SupervisorReports)
    Process.exit(old, :kill)

    assert poll(fn ->
             new = Process.whereis(SupervisorReports)

             is_pid(new) and new != old and
               :ets.whereis(:cluster_scope_supervisor_reports) != :undefined
           end)

    assert SupervisorReports.installed?()
    Process.exit(SupTree.child(sup, :worker), :kill)
    assert poll(fn -> SupervisorReports.for_supervisor(sup)[:count] == 1 end)
  end

  test "an application is resolved to its top supervisor, without atoms" do
    assert {:ok, tree} = Supervision.tree({:name, "cluster_scope"}, %{limit: 2})
    assert tree.pid == Process.whereis(ClusterScope.Supervisor)
    assert tree.found_by == {:application, :cluster_scope}
    assert length(tree.children) == 2 and is_integer(tree.next_offset)

    name = "no_such_application_#{System.unique_integer([:positive])}"
    assert {:error, {:not_found, message}} = Supervision.tree({:name, name}, %{})
    assert message =~ "no loaded application"
    assert_raise ArgumentError, fn -> String.to_existing_atom(name) end

    assert {:error, {:no_supervisor, _}} = Supervision.tree({:name, "stdlib"}, %{})
  end

  test "without a root: the top supervisors of the started applications, paged" do
    assert {:ok, tree} = Supervision.tree(:applications, %{limit: 500})
    assert tree.found_by == :applications
    names = Enum.map(tree.children, & &1.id)
    assert "cluster_scope" in names and "kernel" in names
    # Library applications have no top supervisor: not listed.
    refute "stdlib" in names
    assert names == Enum.sort(names)

    cs = Enum.find(tree.children, &(&1.id == "cluster_scope"))
    assert cs.pid == Process.whereis(ClusterScope.Supervisor) and cs.expanded == false

    assert {:ok, first} = Supervision.tree(:applications, %{limit: 1, depth: 2})
    assert [%{expanded: true, expansion: :ok, children: [_ | _]}] = first.children
    assert first.next_offset == 1
    assert {:ok, second} = Supervision.tree(:applications, %{limit: 1, offset: 1})
    assert hd(second.children).id == Enum.at(names, 1)
  end

  test "a process that is not a supervisor, and a dead one, are clear errors" do
    {:ok, agent} = Agent.start_link(fn -> 0 end)
    assert {:error, {:not_supervisor, message}} = Supervision.tree({:pid, agent}, %{})
    assert message =~ "is not a supervisor"
    assert {:error, {:not_supervisor, _}} = Supervision.tree({:pid, self()}, %{})

    Agent.stop(agent)
    assert {:error, {:not_found, message}} = Supervision.tree({:pid, agent}, %{})
    assert message =~ "not alive"

    # Numbers no pid of this node can have.
    assert {:error, {:not_found, message}} = Supervision.tree({:local_pid, 9_999_999_999, 0}, %{})

    assert message =~ "can exist"
  end

  test "a root with more supervisors than the budget stops expanding at it" do
    children =
      for i <- 1..40 do
        %{
          id: i,
          type: :supervisor,
          start: {Supervisor, :start_link, [[], [strategy: :one_for_one]]}
        }
      end

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    {:ok, tree} = Supervision.tree({:pid, sup}, %{depth: 2, limit: 40})
    expanded = Enum.count(tree.children, & &1.expanded)
    assert expanded == 31
    assert Enum.count(tree.children, &(&1.expanded == false)) == 9
    Supervisor.stop(sup)
  end

  defp poll(fun, deadline \\ System.monotonic_time(:millisecond) + 3_000) do
    cond do
      fun.() -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> Process.sleep(20) && poll(fun, deadline)
    end
  end
end
