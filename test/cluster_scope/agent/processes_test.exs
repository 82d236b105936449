defmodule ClusterScope.Agent.ProcessesTest do
  # The node side of process queries, called here as a peer's Procs would
  # call it through Fanout: this node's summary, pages and window in the
  # core's forms, and the cursor rule the caller shares.
  use ExUnit.Case, async: false

  alias ClusterScope.{Native, ProcessRef, Procs}
  alias ClusterScope.Agent.Processes

  defp opts(extra), do: Procs.normalize(Keyword.merge([max_age_ms: 0], extra))

  test "summary: this node's processes in the core's summary, named by this node" do
    assert {:ok, bin} = Processes.summary(opts(k: 3))
    assert {:ok, summary} = Native.procs_summary_to_term(bin)
    assert summary.process_count > 0
    assert summary.matched == summary.process_count
    assert length(summary.top.memory) == 3
    assert Enum.all?(summary.top.memory, &(&1.node == Atom.to_string(node())))
  end

  test "summary with groups_only: counts and memory by application" do
    # A full snapshot taken within max_age_ms would answer instead (as a
    # summary, which the caller reads the same way): let any earlier one
    # age past max_age_ms (0) first.
    Process.sleep(5)

    assert {:ok, {:groups, groups}} =
             Processes.summary(Map.put(opts(k: 1), :groups_only, :application))

    assert groups.process_count > 0
    assert Enum.any?(groups.applications, &(&1.key == "cluster_scope" and &1.count > 0))
    assert Enum.sum(Enum.map(groups.applications, & &1.count)) == groups.matched
  end

  test "pages follow one another by cursor, ranked, without repeating a process" do
    # One full snapshot of this node answers both pages (max_age_ms).
    {:ok, _} = ClusterScope.Agent.Processes.Snapshots.get(0)
    page_opts = %{opts(limit: 5, sort_by: :reductions) | max_age_ms: 60_000}
    assert {:ok, first} = Processes.page(page_opts)
    assert length(first.rows) == 5 and first.more
    assert Enum.all?(first.rows, &(&1.node == Atom.to_string(node())))
    values = Enum.map(first.rows, & &1.reductions)
    assert values == Enum.sort(values, :desc)

    last = List.last(first.rows)
    {:ok, ref} = ProcessRef.parse(last.pid, [node()])
    cursor = %{value: last.reductions, ref: ref}

    assert {:ok, second} = Processes.page(%{page_opts | cursor: cursor})
    assert second.rows != []
    assert MapSet.disjoint?(MapSet.new(first.rows, & &1.pid), MapSet.new(second.rows, & &1.pid))
    assert Enum.all?(second.rows, &(&1.reductions <= last.reductions))
  end

  test "window: the change over window_ms, top by reductions, with the winners' identity" do
    busy = spawn(fn -> spin(0) end)
    on_exit(fn -> Process.exit(busy, :kill) end)

    assert {:ok, bin} = Processes.window(opts(window_ms: 300, limit: 3))
    assert {:ok, window} = Native.procs_window_to_term(bin)
    assert window.interval_ms >= 300
    pids = Enum.map(window.top.reductions, & &1.pid)
    assert List.to_string(:erlang.pid_to_list(busy)) in pids
  end

  test "after_cursor: where each node resumes after the last row shown" do
    ref = %ProcessRef{node: :b@h, id: 42, serial: 0}
    cursor = %{value: 100, ref: ref}

    assert Processes.after_cursor(nil, :a@h) == nil
    # A node sorting before the cursor's showed all its rows of that value.
    assert Processes.after_cursor(cursor, :a@h) == {100, :max}
    # The cursor's node resumes after the pid.
    assert Processes.after_cursor(cursor, :b@h) == {100, {42, 0}}
    # A node sorting after it showed none of them.
    assert Processes.after_cursor(cursor, :c@h) == {100, nil}
  end

  test "page_opts: the request's filter, sort, limit and the key to start after" do
    o = opts(limit: 7, sort_by: :memory, min_memory: 10)

    assert Processes.page_opts(o, {5, nil}) == %{
             min_memory: 10,
             sort_by: :memory,
             limit: 7,
             after: {5, nil}
           }
  end

  defp spin(n), do: spin(:erlang.phash2({n, :rand.uniform()}))
end
