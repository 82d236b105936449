defmodule ClusterScope.Agent.Processes.ThinWindowTest do
  # Not async: windows see every process of the node.
  use ExUnit.Case

  alias ClusterScope.{Native, ProcessRef, Procs}
  alias ClusterScope.Agent.Processes.{Collector, Snapshots}

  defmodule Busy do
    def loop(n), do: loop(:erlang.phash2({n, :rand.uniform()}))
  end

  setup do
    busy = spawn(fn -> Busy.loop(0) end)
    on_exit(fn -> Process.exit(busy, :kill) end)
    %{busy: busy}
  end

  test "a window without row filters reads three numbers, then its winners whole", %{busy: busy} do
    thin = Snapshots.stats(:thin).collections
    {:ok, list} = Procs.list(window_ms: 300, sort_by: :reductions, limit: 3)
    assert Snapshots.stats(:thin).collections == thin + 2

    assert [row | _] = list.processes
    assert row.pid == ProcessRef.to_string(busy)
    # The winner's identity was read after the window.
    assert row.current_function != "undefined"
    assert row.initial_call == "erlang:apply/2"
    assert row.total_heap_size > 0
    assert row.reductions_delta > 0 and row.reductions_per_sec > 0
    assert list.window.matched >= list.window.after - 10
    assert list.window.totals.reductions_delta >= row.reductions_delta
  end

  test "a window filtered by type reads full rows at both ends" do
    thin = Snapshots.stats(:thin).collections
    {:ok, list} = Procs.list(window_ms: 200, sort_by: :reductions, limit: 3, type: :gen_server)
    assert Snapshots.stats(:thin).collections == thin
    assert Enum.all?(list.processes, &(&1.type == "gen_server"))
  end

  test "a thin snapshot holds numbers only, for every process but the walk's own" do
    {:ok, snapshot, stats} = Collector.collect_thin()
    assert stats.processes > 50
    {:ok, rows, _} = Native.procs_page(snapshot, %{sort_by: :reductions, limit: 1000})
    refute Enum.any?(rows, &(&1.pid == self()))
    assert Enum.all?(rows, &(&1.initial_call == "undefined" and &1.type == "plain"))
    assert Enum.any?(rows, &(&1.memory > 0 and &1.reductions > 0))
  end
end
