# Process aggregation: Rust against plain Elixir, collection cost and heap,
# window mode, and a cluster-wide top 20.
#
#   MIX_ENV=test elixir --erl "+P 2000000" -S mix run bench/process_aggregation.exs
#   QUICK=1 ... runs 100k and 200k processes instead of 100k and 1M.
#
# Baseline (named, run in the same process on the same rows): the same
# aggregation written with Enum and Map over the rows as Elixir tuples:
# counts by status, application, initial call, module and type (count and
# memory), top 20 by memory, reductions, queue and heap, log2 histograms of
# memory and queue, totals.

alias ClusterScope.{LocalCluster, Native, Procs}
alias ClusterScope.Procs.{Collector, Rows}

quick? = System.get_env("QUICK") == "1"
big = if quick?, do: 200_000, else: 1_000_000
big_label = if quick?, do: "200k", else: "1m"
peer_procs = if quick?, do: 30_000, else: 100_000

unless Native.loaded?(), do: raise("the native core is not loaded")

if :erlang.system_info(:process_limit) < big + 50_000 do
  raise "process limit #{:erlang.system_info(:process_limit)} is too low: run with elixir --erl \"+P 2000000\" -S mix run ..."
end

defmodule Bench.Holders do
  # Processes of varied sizes: each holds a list of 0..400 words, and one in
  # fifty has a few messages queued.
  def spawn_many(n) do
    :rand.seed(:exsss, {1, 2, 3})

    for i <- 1..n do
      words = :rand.uniform(401) - 1
      pid = spawn(fn -> hold(List.duplicate(i, words)) end)
      if rem(i, 50) == 0, do: for(m <- 1..:rand.uniform(20), do: send(pid, {:m, m}))
      pid
    end
  end

  def hold(data) do
    receive do
      :stop -> length(data)
    end
  end

  def duty_cycle do
    t = System.monotonic_time(:millisecond) + 5
    spin(t)
    Process.sleep(5)
    duty_cycle()
  end

  defp spin(t) do
    :erlang.phash2(make_ref())
    if System.monotonic_time(:millisecond) < t, do: spin(t)
  end

  def stop(pids), do: Enum.each(pids, &Process.exit(&1, :kill))
end

defmodule Bench.ElixirAggregate do
  # The baseline: the same summary in plain Elixir.
  def run(rows, k) do
    groups =
      for {col, name} <- [{7, :status}, {11, :application}, {10, :initial_call}, {12, :type}],
          into: %{} do
        {name,
         Enum.reduce(rows, %{}, fn row, acc ->
           Map.update(acc, key(elem(row, col)), {1, elem(row, 1)}, fn {c, m} ->
             {c + 1, m + elem(row, 1)}
           end)
         end)}
      end

    modules =
      Enum.reduce(rows, %{}, fn row, acc ->
        mod =
          case elem(row, 10) do
            {m, _, _} -> m
            _ -> :undefined
          end

        Map.update(acc, mod, {1, elem(row, 1)}, fn {c, m} -> {c + 1, m + elem(row, 1)} end)
      end)

    top =
      for {col, name} <- [
            {1, :memory},
            {2, :reductions},
            {3, :message_queue_len},
            {6, :heap_size}
          ],
          into: %{} do
        {name, rows |> Enum.sort_by(&elem(&1, col), :desc) |> Enum.take(k)}
      end

    hist = fn col ->
      Enum.reduce(rows, %{}, fn row, acc ->
        v = elem(row, col)
        b = if v <= 1, do: 0, else: trunc(:math.log2(v))
        Map.update(acc, b, 1, &(&1 + 1))
      end)
    end

    totals =
      Enum.reduce(rows, {0, 0, 0, 0}, fn row, {m, r, q, h} ->
        {m + elem(row, 1), r + elem(row, 2), q + elem(row, 3), h + elem(row, 6)}
      end)

    %{
      groups: Map.put(groups, :module, modules),
      top: top,
      memory_histogram: hist.(1),
      queue_histogram: hist.(3),
      totals: totals
    }
  end

  defp key({m, f, a}), do: "#{m}:#{f}/#{a}"
  defp key(other), do: other
end

ms = fn us -> Float.round(us / 1000, 1) end

timed = fn fun ->
  t0 = System.monotonic_time(:microsecond)
  result = fun.()
  {System.monotonic_time(:microsecond) - t0, result}
end

best_of = fn n, fun -> Enum.min(for _ <- 1..n, do: elem(timed.(fun), 0)) end

aggregate_case = fn count, label ->
  holders = Bench.Holders.spawn_many(count)
  {:ok, snapshot, stats} = Collector.collect()
  node_name = Atom.to_string(node())
  rust_us = best_of.(3, fn -> {:ok, _} = Native.procs_summary(snapshot, node_name, %{k: 20}) end)

  # The baseline's input: the same rows, as Elixir tuples on the heap.
  {rows, _} = Rows.rows(Process.list(), :pid, Rows.context())

  elixir_us =
    best_of.(if(count > 200_000, do: 1, else: 3), fn -> Bench.ElixirAggregate.run(rows, 20) end)

  IO.puts(
    "aggregate #{label}: #{stats.processes} processes; Rust summary #{ms.(rust_us)} ms, " <>
      "Elixir #{ms.(elixir_us)} ms"
  )

  line =
    "RESULT bench=process_aggregation case=aggregate_#{label} processes=#{stats.processes} " <>
      "rust_ms=#{ms.(rust_us)} elixir_ms=#{ms.(elixir_us)} ratio=#{Float.round(elixir_us / rust_us, 1)}"

  {line, holders}
end

# (a) aggregation, 100k
{agg_100k, holders_100k} = aggregate_case.(100_000, "100k")

# (c) window over the same 100k: reductions per second, memory growth.
# Four busy processes at about half a scheduler each (work 5 ms, sleep 5 ms).
# Spinning ones would take both cores, and the collector, at normal priority,
# shares the schedulers fairly with them: every collection would slow down.
busy =
  for _ <- 1..4 do
    spawn(fn -> Bench.Holders.duty_cycle() end)
  end

{:ok, before, _} = Collector.collect()
Process.sleep(1_000)
{:ok, later, later_stats} = Collector.collect()

window_us =
  best_of.(3, fn -> {:ok, _} = Native.procs_window(before, later, "n", 1_000, %{k: 20}) end)

{total_window_us, {:ok, %{processes: top_window, node_errors: []}}} =
  timed.(fn -> Procs.list(window_ms: 1_000, sort_by: :reductions, limit: 20) end)

busy_found =
  Enum.count(busy, fn p ->
    Enum.any?(top_window, &(&1.pid == ClusterScope.ProcessRef.to_string(p)))
  end)

Bench.Holders.stop(busy)

window_line =
  "RESULT bench=process_aggregation case=window_100k processes=#{later_stats.processes} " <>
    "window_ms=1000 rust_window_ms=#{ms.(window_us)} total_ms=#{ms.(total_window_us)} busy_in_top20=#{busy_found}"

Bench.Holders.stop(holders_100k)
Process.sleep(500)

# (a) aggregation at the large size, then (b) collect-and-summarise with heap.
{agg_big, holders_big} = aggregate_case.(big, big_label)
:erlang.garbage_collect()

{collect_us, {heap, processes}} =
  timed.(fn ->
    task =
      Task.async(fn ->
        {:ok, snapshot, stats} = Collector.collect(measure_heap: true)
        {:ok, _} = Native.procs_summary(snapshot, "n", %{k: 20})
        {stats.peak_heap_bytes, stats.processes}
      end)

    Task.await(task, :infinity)
  end)

collect_line =
  "RESULT bench=process_aggregation case=collect_#{big_label} processes=#{processes} " <>
    "total_ms=#{ms.(collect_us)} peak_heap_mb=#{Float.round(heap / 1_048_576, 2)} chunk=500"

Bench.Holders.stop(holders_big)
Process.sleep(1_000)

# (d) cluster-wide top 20 over 4 nodes (this one and 3 peers).
{:ok, peers} = LocalCluster.start_peers(3, aliases: false)
local_holders = Bench.Holders.spawn_many(peer_procs)

for peer <- peers do
  _ = :erpc.call(peer.node, ClusterScope.Test.ProcHolder, :spawn_varied, [peer_procs], 120_000)
end

Process.sleep(500)

cluster_us =
  best_of.(3, fn ->
    {:ok, %{processes: rows, node_errors: []}} =
      Procs.list(sort_by: :memory, limit: 20, max_age_ms: 0, timeout: 60_000)

    20 = length(rows)
  end)

cluster_line =
  "RESULT bench=process_aggregation case=cluster_top20 nodes=4 processes_per_node=#{peer_procs} " <>
    "total_ms=#{ms.(cluster_us)}"

Bench.Holders.stop(local_holders)
Enum.each(peers, &LocalCluster.stop/1)

Enum.each([agg_100k, agg_big, collect_line, window_line, cluster_line], &IO.puts/1)
