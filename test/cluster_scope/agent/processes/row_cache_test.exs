defmodule ClusterScope.Agent.Processes.RowCacheTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Agent.Processes.{Collector, RowCache, Rows}
  alias TestApp.Echo

  # Rows that do not move between two reads: the fields that change with
  # every read (memory, reductions, heap sizes, and the status: a process
  # can be running at one read and waiting at the next) are left out.
  defp stable(row),
    do: row |> Tuple.to_list() |> Enum.with_index() |> Enum.reject(fn {_, i} -> i in 1..7 end)

  defp table, do: :ets.new(:t, [:set, :public])

  # Processes with a dictionary large enough to be cached.
  defp big_dict(fun) do
    spawn(fn ->
      for i <- 1..40, do: Process.put({:k, i}, i)
      fun.()
    end)
  end

  test "a cached process reads the same row without its dictionary, for every type" do
    {:ok, echo} = Echo.start()
    :sys.replace_state(echo, fn s -> for(i <- 1..40, do: Process.put({:k, i}, i)) && s end)
    {:ok, sup} = Supervisor.start_link([], strategy: :one_for_one)
    :sys.replace_state(sup, fn s -> for(i <- 1..40, do: Process.put({:k, i}, i)) && s end)

    task =
      Task.async(fn ->
        for i <- 1..40, do: Process.put({:k, i}, i)
        receive(do: (:go -> :ok))
      end)

    plain = big_dict(fn -> receive(do: (:go -> :ok)) end)
    small = spawn(fn -> receive(do: (:go -> :ok)) end)
    Process.sleep(20)
    pids = [echo, sup, task.pid, plain, small, Process.whereis(:kernel_sup)]
    t = table()

    {whole, _} = Rows.rows(pids, :pid, Rows.context())
    {first, _} = Rows.cached_rows(pids, Rows.context(), t, 100)
    # Only the large dictionaries are cached.
    assert Enum.filter(pids, &:ets.member(t, &1)) == [echo, sup, task.pid, plain]
    {second, _} = Rows.cached_rows(pids, Rows.context(), t, 100)

    assert Enum.map(first, &stable/1) == Enum.map(whole, &stable/1)
    assert Enum.map(second, &stable/1) == Enum.map(whole, &stable/1)
    types = Enum.map(second, &elem(&1, 12))
    assert types == [:gen_server, :supervisor, :task, :plain, :plain, :supervisor]
    assert elem(List.last(second), 11) == :kernel

    send(task.pid, :go)
    Task.await(task)
    send(plain, :go)
    send(small, :go)
    GenServer.stop(echo)
  end

  test "the type that depends on the current function follows it on a cached read" do
    # A plain process that enters a gen_server loop after it was cached.
    t = table()
    me = self()

    pid =
      big_dict(fn ->
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
    assert :ets.member(t, pid)
    {[row], _} = Rows.cached_rows([pid], ctx, t, 100)
    assert elem(row, 12) == :gen_server
    Process.exit(pid, :kill)
  end

  test "dead processes leave the cache; it never holds more than its bound" do
    t = table()
    pids = for _ <- 1..20, do: big_dict(fn -> receive(do: (:stop -> :ok)) end)
    Process.sleep(20)
    {rows, _} = Rows.cached_rows(pids, Rows.context(), t, 10)
    assert length(rows) == 20
    cached = Enum.filter(pids, &:ets.member(t, &1))
    assert length(cached) == 10

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
    pid = big_dict(fn -> receive(do: (:stop -> :ok)) end)
    Process.sleep(20)
    {:ok, _, _} = Collector.collect()
    assert RowCache.cached?(pid)
    Process.exit(pid, :kill)
    Process.sleep(20)
    assert RowCache.sweep() >= 1
    refute RowCache.cached?(pid)
    assert RowCache.size() <= RowCache.max_entries()
  end
end
