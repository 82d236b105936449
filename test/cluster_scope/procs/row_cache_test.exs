defmodule ClusterScope.Procs.RowCacheTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Procs.{Collector, RowCache, Rows}
  alias TestApp.Echo

  # Rows that do not move between two reads: the fields that change with
  # every read (memory, reductions, heap sizes) are left out.
  defp stable(row),
    do: row |> Tuple.to_list() |> Enum.with_index() |> Enum.reject(fn {_, i} -> i in 1..6 end)

  defp table, do: :ets.new(:t, [:set, :public])

  test "a cached process reads the same row without its dictionary, for every type" do
    {:ok, echo} = Echo.start()
    {:ok, sup} = Supervisor.start_link([], strategy: :one_for_one)
    task = Task.async(fn -> receive(do: (:go -> :ok)) end)
    plain = spawn(fn -> receive(do: (:go -> :ok)) end)
    pids = [echo, sup, task.pid, plain, Process.whereis(:kernel_sup)]
    t = table()

    {whole, _} = Rows.rows(pids, :pid, Rows.context())
    {first, ctx} = Rows.cached_rows(pids, Rows.context(), t, 100)
    assert Enum.all?(pids, &:ets.member(t, &1))
    {second, _} = Rows.cached_rows(pids, ctx, t, 100)

    assert Enum.map(first, &stable/1) == Enum.map(whole, &stable/1)
    assert Enum.map(second, &stable/1) == Enum.map(whole, &stable/1)
    types = Enum.map(second, &elem(&1, 12))
    assert types == [:gen_server, :supervisor, :task, :plain, :supervisor]
    assert elem(List.last(second), 11) == :kernel

    send(task.pid, :go)
    Task.await(task)
    send(plain, :go)
    GenServer.stop(echo)
  end

  test "the type that depends on the current function follows it on a cached read" do
    # A plain process that enters a gen_server loop after it was cached.
    t = table()
    me = self()

    pid =
      spawn(fn ->
        receive do
          :enter ->
            # enter_loop needs a parent; no $initial_call is set.
            Process.put(:"$ancestors", [me])
            :gen_server.enter_loop(Echo, [], %{})
        end
      end)

    {[row], ctx} = Rows.cached_rows([pid], Rows.context(), t, 100)
    assert elem(row, 12) == :plain
    send(pid, :enter)
    Process.sleep(50)
    {[row], _} = Rows.cached_rows([pid], ctx, t, 100)
    assert elem(row, 12) == :gen_server
    Process.exit(pid, :kill)
  end

  test "dead processes leave the cache; it never holds more than its bound" do
    t = table()
    pids = for _ <- 1..20, do: spawn(fn -> receive(do: (:stop -> :ok)) end)
    {rows, _} = Rows.cached_rows(pids, Rows.context(), t, 10)
    assert length(rows) == 20
    # The bound is on the table's entries (processes, and the few distinct
    # values with their ids).
    assert :ets.info(t, :size) == 10
    cached = Enum.filter(pids, &:ets.member(t, &1))
    assert length(cached) in 5..9

    [gone | _] = cached
    # One cached and one not: the sweep drops the one entry.
    also_gone = hd(pids -- cached)
    alive = pids -- [gone, also_gone]
    for p <- [gone, also_gone], do: Process.exit(p, :kill)
    Process.sleep(20)
    assert Rows.sweep_cache(t) == 1
    refute :ets.member(t, gone)
    assert Enum.count(alive, &:ets.member(t, &1)) == length(cached) - 1

    # A cached process that died is dropped when read, and has no row.
    [victim | _] = Enum.filter(alive, &:ets.member(t, &1))
    Process.exit(victim, :kill)
    Process.sleep(20)
    {rows, _} = Rows.cached_rows([victim], Rows.context(), t, 10)
    assert rows == []
    refute :ets.member(t, victim)
    Enum.each(alive, &Process.exit(&1, :kill))
  end

  test "the node's collection fills its cache and the sweep after it drops the dead" do
    assert RowCache.whereis()
    pid = spawn(fn -> receive(do: (:stop -> :ok)) end)
    {:ok, _, _} = Collector.collect()
    assert RowCache.cached?(pid)
    Process.exit(pid, :kill)
    Process.sleep(20)
    assert RowCache.sweep() >= 1
    refute RowCache.cached?(pid)
    assert RowCache.size() <= RowCache.max_entries()
  end
end
