defmodule ClusterScope.Agent.Processes.GroupedTest do
  # Not async: walks see every process of the node.
  use ExUnit.Case

  alias ClusterScope.{Native, Procs}
  alias ClusterScope.Agent.Processes.{Collector, Grouped, Snapshots}

  defp app_counts(entries), do: Map.new(entries, &{&1.key, &1.count})

  test "counts by application from memory and group leader equal a full snapshot's" do
    {:ok, groups, stats} = Grouped.collect()
    {:ok, snapshot, _} = Collector.collect()
    {:ok, bin} = Native.procs_summary(snapshot, "n", %{k: 1})
    {:ok, summary} = Native.procs_summary_to_term(bin)

    answer = Grouped.answer(groups, %{})
    from_snapshot = app_counts(summary.groups.application.entries)
    from_groups = app_counts(answer.applications)

    # The runtime's applications hold still between the two walks.
    for app <- ["kernel", "stdlib", "logger", "cluster_scope"],
        Map.has_key?(from_snapshot, app),
        do: assert(from_groups[app] == from_snapshot[app], app)

    assert answer.process_count == stats.processes
    assert answer.matched == answer.process_count
    assert abs(answer.process_count - summary.process_count) < 50
    assert answer.memory > 0
    counts = Enum.map(answer.applications, & &1.count)
    assert counts == Enum.sort(counts, :desc)
  end

  test "the distribution reads groups unless another filter needs rows" do
    before = Snapshots.stats({:groups, :application}).collections
    {:ok, dist} = Procs.distribution(max_age_ms: 0)
    assert Snapshots.stats({:groups, :application}).collections == before + 1
    assert [%{process_count: n, matched: n}] = dist.per_node
    assert "kernel" in dist.applications
    assert Enum.any?(dist.cells, &(&1.application == "kernel" and &1.count > 5))

    # max_age_ms 0 is "a collection started in this millisecond or later".
    Process.sleep(5)
    {:ok, kernel} = Procs.distribution(application: "kernel", max_age_ms: 0)
    assert Snapshots.stats({:groups, :application}).collections == before + 2
    assert kernel.applications == ["kernel"]
    [%{matched: m}] = kernel.per_node
    # Two walks apart: a kernel process may come or go in between.
    assert abs(m - Enum.find(dist.cells, &(&1.application == "kernel")).count) <= 2

    # A type filter needs each process's row: a full snapshot answers.
    {:ok, sups} = Procs.distribution(type: :supervisor, max_age_ms: 0)
    assert Snapshots.stats({:groups, :application}).collections == before + 2
    [%{matched: s, process_count: total}] = sups.per_node
    assert s > 0 and s < total
  end

  test "a walk's own processes are not counted" do
    # Every process read is alive; the walkers are left out: what the walk
    # counts is what was alive but the walk, within the churn of a test node.
    {:ok, groups, _} = Grouped.collect(workers: 1)
    total = Grouped.answer(groups, %{}).process_count
    assert total < :erlang.system_info(:process_count)
  end

  test "only application filters are answered from groups" do
    assert Grouped.answers?(%{})
    assert Grouped.answers?(%{application: "kernel"})
    refute Grouped.answers?(%{application: "kernel", min_memory: 1})
    refute Grouped.answers?(%{type: :task})
  end
end
