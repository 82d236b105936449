defmodule ClusterScope.Agent.Processes.RankedTest do
  # Not async: walks see every process of the node.
  use ExUnit.Case

  alias ClusterScope.{Native, ProcessRef, Procs}
  alias ClusterScope.Agent.Processes.{Ranked, Snapshots, Walker}
  alias ClusterScope.Test.ProcHolder

  # 12 holders of 300k..410k words (2.4..3.3 MB each, 10k words apart):
  # larger than any other process of a test node, so the top 12 by memory
  # are exactly these, in order of size.
  setup do
    holders =
      for i <- 1..12, do: spawn(ProcHolder, :hold, [List.duplicate(i, 290_000 + 10_000 * i)])

    # Let each one settle (its heap is built by the list it was given).
    Process.sleep(50)
    on_exit(fn -> Enum.each(holders, &Process.exit(&1, :kill)) end)
    min = holders |> Enum.map(&memory/1) |> Enum.min()
    %{holders: holders, min: min}
  end

  defp memory(pid), do: pid |> Process.info(:memory) |> elem(1)

  # The holders sorted as a full sort would: memory desc, then pid order
  # (the page order's tie break).
  defp full_sort(pids) do
    pids
    |> Enum.map(&{&1, memory(&1)})
    |> Enum.sort_by(fn {pid, m} -> {-m, pid} end)
  end

  test "a top-K by memory reads one key and equals a full sort of the same processes",
       %{holders: holders} do
    {:ok, %{processes: rows, node_errors: []}} =
      Procs.list(sort_by: :memory, limit: 40, max_age_ms: 0, node: node())

    assert_sorted(rows)
    expected = full_sort(holders)
    mine = holder_rows(rows, holders)
    assert Enum.map(mine, & &1.pid) == Enum.map(expected, &ProcessRef.to_string(elem(&1, 0)))
    assert Enum.map(mine, & &1.memory) == Enum.map(expected, &elem(&1, 1))
    # Details were read for the winners: the whole row is there.
    assert Enum.all?(mine, &(&1.current_function == "Elixir.ClusterScope.Test.ProcHolder:hold/1"))
    assert Enum.all?(mine, &(&1.total_heap_size > 40_000 and &1.type == "plain"))
    # The answer came from a column, not a full snapshot.
    assert Snapshots.stats({:column, :memory}).collections >= 1
  end

  test "pages of a column with a min bound go through every process once, in order",
       %{holders: holders, min: min} do
    pages = page_all(%{sort_by: :memory, min_memory: min, limit: 5, max_age_ms: 0}, nil, [])
    rows = List.flatten(pages)

    assert length(pages) == div(length(rows) + 4, 5)
    assert length(Enum.uniq_by(rows, & &1.pid)) == length(rows)
    assert_sorted(rows)
    assert Enum.all?(rows, &(&1.memory >= min))
    expected = full_sort(holders)

    assert Enum.map(holder_rows(rows, holders), & &1.pid) ==
             Enum.map(expected, &ProcessRef.to_string(elem(&1, 0)))
  end

  defp holder_rows(rows, holders) do
    texts = MapSet.new(holders, &ProcessRef.to_string/1)
    Enum.filter(rows, &MapSet.member?(texts, &1.pid))
  end

  # Memory descending; equal memory in pid order.
  defp assert_sorted(rows) do
    keys = Enum.map(rows, fn r -> {-r.memory, pid_of(r.pid)} end)
    assert keys == Enum.sort(keys)
  end

  defp pid_of(text) do
    {:ok, ref} = ProcessRef.parse(text, [node()])
    {:ok, pid} = ProcessRef.to_local_pid(ref)
    pid
  end

  defp page_all(opts, cursor, acc) do
    opts = if cursor, do: Map.put(opts, :cursor, decode(cursor)), else: opts
    {:ok, page} = Procs.list(opts)
    acc = [page.processes | acc]
    if page.next_cursor, do: page_all(opts, page.next_cursor, acc), else: Enum.reverse(acc)
  end

  defp decode(cursor) do
    {:ok, decoded} = Procs.decode_cursor(cursor, :memory)
    decoded
  end

  test "a winner that died after the walk is replaced by the next one", %{holders: holders} do
    {:ok, column, stats} = Ranked.collect(:memory)
    assert stats.processes > 12
    [first, second, third | rest] = Enum.map(full_sort(holders), &elem(&1, 0))
    for pid <- [first, third], do: Process.exit(pid, :kill)
    Process.sleep(20)

    # Only the holders are above the bound.
    min = rest |> Enum.take(4) |> Enum.map(&memory/1) |> Enum.min()
    {:ok, rows, more?} = Ranked.page(column, :memory, 5, nil, min)
    got = rows |> Enum.map(&elem(&1, 0)) |> Enum.filter(&(&1 in holders))
    assert Enum.take(got, 5) == Enum.take([second | rest], length(Enum.take(got, 5)))
    refute first in Enum.map(rows, &elem(&1, 0))
    refute third in Enum.map(rows, &elem(&1, 0))
    assert length(rows) == 5
    assert more?

    # Every winner dead: an empty page, not an error.
    dead = spawn(fn -> :ok end)
    Process.sleep(10)
    only_dead = Native.procs_column_new()
    :ok = Native.procs_column_push(only_dead, [dead], [123])
    assert {:ok, [], false} = Ranked.page(only_dead, :memory, 5, nil, nil)
  end

  test "dead winners beyond the first fetch are replaced from the following ones", %{
    holders: holders
  } do
    # A column made by hand: 9 dead pids rank above 12 live ones (more dead
    # than the first fetch's slack of 4).
    dead = for _ <- 1..9, do: spawn(fn -> :ok end)
    Process.sleep(20)
    column = Native.procs_column_new()
    :ok = Native.procs_column_push(column, dead, Enum.map(1..9, &(10_000 + &1)))
    :ok = Native.procs_column_push(column, holders, Enum.map(1..12, &(100 * &1)))

    {:ok, rows, true} = Ranked.page(column, :memory, 5, nil, nil)
    # The ranking value is kept in the row (element 1: memory).
    assert Enum.map(rows, &{elem(&1, 0), elem(&1, 1)}) ==
             holders |> Enum.zip(Enum.map(1..12, &(100 * &1))) |> Enum.reverse() |> Enum.take(5)

    {:ok, rows, false} = Ranked.page(column, :memory, 12, nil, nil)
    assert length(rows) == 12
    # After a cursor: {value, nil} starts at that value, {value, :max} below it.
    {:ok, [_, _, _], false} = Ranked.page(column, :memory, 5, {300, nil}, nil)
    {:ok, [row], false} = Ranked.page(column, :memory, 5, {300, :max}, 150)
    assert {elem(row, 0), elem(row, 1)} == {Enum.at(holders, 1), 200}
  end

  test "queue and reductions ranks, and which pages a column answers" do
    deaf = ProcHolder.spawn_deaf(77)
    on_exit(fn -> Process.exit(deaf, :kill) end)

    {:ok, %{processes: [row | _]}} =
      Procs.list(sort_by: :message_queue_len, limit: 3, max_age_ms: 0)

    assert row.pid == ProcessRef.to_string(deaf)
    assert row.message_queue_len == 77

    assert Ranked.answers?(%{}, :reductions)
    assert Ranked.answers?(%{min_memory: 5}, :memory)
    assert Ranked.answers?(%{min_queue: 5}, :message_queue_len)
    refute Ranked.answers?(%{min_queue: 5}, :memory)
    refute Ranked.answers?(%{application: "kernel"}, :memory)
    refute Ranked.answers?(%{}, :status)
  end

  test "a fresh full snapshot answers pages without a column walk" do
    {:ok, _} = Snapshots.get(0)
    before = Snapshots.stats({:column, :reductions}).collections
    {:ok, %{processes: [_ | _]}} = Procs.list(sort_by: :reductions, limit: 3, max_age_ms: 60_000)
    assert Snapshots.stats({:column, :reductions}).collections == before
  end

  test "walkers never see their own processes, and see every other once" do
    # Enough processes for two workers.
    extra = for _ <- 1..21_000, do: spawn(fn -> receive do: (:stop -> :ok) end)
    on_exit(fn -> Enum.each(extra, &Process.exit(&1, :kill)) end)
    assert Walker.workers() == min(2, :erlang.system_info(:schedulers_online))
    outsider = spawn(fn -> receive do: (:stop -> :ok) end)

    {:ok, states} =
      Walker.walk(fn -> {self(), []} end, fn pids, {me, seen} -> {:ok, {me, [pids | seen]}} end,
        chunk: 500,
        exclude: [outsider]
      )

    workers = Enum.map(states, &elem(&1, 0))
    assert self() in workers
    assert length(workers) == Walker.workers()
    seen = Enum.flat_map(states, fn {_, chunks} -> List.flatten(chunks) end)
    assert length(seen) == length(Enum.uniq(seen))
    seen = MapSet.new(seen)
    refute Enum.any?(workers, &MapSet.member?(seen, &1))
    refute MapSet.member?(seen, outsider)
    assert Enum.all?(extra, &MapSet.member?(seen, &1))
  end

  test "a collection leaves out its own processes" do
    # The collection runs in this process: it must not be in its snapshot.
    {:ok, snapshot, _} = ClusterScope.Agent.Processes.Collector.collect()
    {:ok, rows, _} = Native.procs_page(snapshot, %{sort_by: :memory, limit: 1000})
    refute Enum.any?(rows, &(&1.pid == self()))

    {:ok, column, _} = Ranked.collect(:memory)
    {:ok, entries, _} = Native.procs_column_page(column, %{limit: 1000})
    refute Enum.any?(entries, &(elem(&1, 0) == self()))
    assert Enum.any?(entries, &(elem(&1, 0) == Process.whereis(:code_server)))
  end

  test "a node that cannot answer in time is a timeout node error, not an empty answer" do
    extra = for _ <- 1..30_000, do: spawn(fn -> receive do: (:stop -> :ok) end)
    on_exit(fn -> Enum.each(extra, &Process.exit(&1, :kill)) end)

    # This node only: peers of earlier tests may still be known as down.
    {:ok, list} = Procs.list(sort_by: :memory, limit: 5, max_age_ms: 0, timeout: 1, node: node())
    assert list.processes == []
    assert [%{node: n, status: :timeout}] = list.node_errors
    assert n == node()
  end

  test "column NIFs refuse bad input with errors naming the field" do
    c = Native.procs_column_new()

    assert {:error, {:invalid_argument, "values" <> _}} =
             Native.procs_column_push(c, [self()], [])

    assert {:error, {:invalid_argument, "pids" <> _}} = Native.procs_column_push(c, [:x], [1])
    assert {:error, {:invalid_argument, "column" <> _}} = Native.procs_column_push(:x, [], [])

    assert {:error, {:invalid_option, "invalid option limit" <> _}} =
             Native.procs_column_page(c, %{limit: 0})

    assert {:error, {:invalid_option, "invalid option min" <> _}} =
             Native.procs_column_page(c, %{limit: 1, min: -1})

    assert {:error, {:invalid_argument, "exclude" <> _}} = Native.procs_pids_new([self()], [:x])
    assert :ok = Native.procs_column_push(c, [self()], [:undefined])
    assert %{rows: 0} = Native.procs_column_info(c)
  end
end
