# Process queries end to end against recon, the tool a user would pick
# instead (principle 7), plus the Rust-vs-Elixir aggregation baseline.
#
#   ERL_LIBS=/path/to/recon/parent MIX_ENV=test elixir --erl "+P 2000000" -S mix run bench/process_aggregation.exs
#   QUICK=1 ... runs 100k and 200k processes (and the window at 100k) instead of 100k and 1M.
#   ROUNDS=n (default 5), WINDOW_ROUNDS=n (default 1: recon's window at 1M
#   takes minutes and gigabytes), SKIP_WINDOW=1, SKIP_SMALL=1 (no 100k cases),
#   SKIP_TOP=1 (no top cases at the big size).
#
# recon is a Hex package and never part of this repository: build it
# anywhere (`erlc -o ebin src/*.erl` in a clone of ferd/recon) and put its
# parent directory in ERL_LIBS. Without it the bench says so and runs the
# rest.
#
# What is timed is what a user waits for: the question asked through the
# public API (`ClusterScope.Procs.list/1` with `max_age_ms: 0`, so a fresh
# collection every time, through the fan-out, on this node) against
# `recon:proc_count/2` and `recon:proc_window/3` called in the same VM.
# Rounds are interleaved (recon first in odd rounds, ClusterScope first in
# even ones) and each side's median of ROUNDS (default 5) is reported with
# its spread ((max - min) / median). Memory: the VM's `erlang:memory(total)`
# is sampled every 2 ms from a high-priority process during each call; the
# growth is the peak minus the value before the call (median over rounds).
# Answers are checked to be the same: the processes both rank above the
# higher of the two cut-off values (ties at the cut-off aside), counting only
# the bench's holder processes (the caller's own heap and ClusterScope's
# processes are not held still).
#
# Baseline (second line, as before): the whole summary written with Enum and
# Map over the rows as Elixir tuples, against the Rust summary of the same
# snapshot.

alias ClusterScope.{Native, Procs}
alias ClusterScope.Agent.Processes.{Collector, Rows}

quick? = System.get_env("QUICK") == "1"
rounds = String.to_integer(System.get_env("ROUNDS") || "5")
big = if quick?, do: 200_000, else: 1_000_000
big_label = if quick?, do: "200k", else: "1m"
window_size = if quick?, do: 100_000, else: 1_000_000
window_label = if quick?, do: "100k", else: "1m"
# recon's proc_window at 1M takes minutes and gigabytes per call.
window_rounds =
  String.to_integer(System.get_env("WINDOW_ROUNDS") || if(quick?, do: "1", else: "1"))

unless Native.loaded?(), do: raise("the native core is not loaded")

if :erlang.system_info(:process_limit) < big + 50_000 do
  raise "process limit #{:erlang.system_info(:process_limit)} is too low: run with elixir --erl \"+P 2000000\" -S mix run ..."
end

recon? = Code.ensure_loaded?(:recon) and function_exported?(:recon, :proc_count, 2)

unless recon? do
  IO.puts(
    "recon is not loadable (put a compiled recon's parent directory in ERL_LIBS): " <>
      "the comparison with recon is skipped, the rest runs"
  )
end

defmodule Bench.Load do
  def uptime do
    case File.read("/proc/loadavg") do
      {:ok, text} -> text |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end
end

defmodule Bench.Holders do
  # Idle processes of varied sizes (0..400 words), one in fifty with 1..20
  # messages queued, plus 40 larger ones of distinct sizes and 40 with
  # distinct long queues, so the top 20 of either key is unambiguous.
  def spawn_many(n) do
    :rand.seed(:exsss, {1, 2, 3})

    small =
      for i <- 1..n do
        words = :rand.uniform(401) - 1
        pid = spawn(__MODULE__, :hold, [List.duplicate(i, words)])
        if rem(i, 50) == 0, do: for(m <- 1..:rand.uniform(20), do: send(pid, {:m, m}))
        pid
      end

    big = for i <- 1..40, do: spawn(__MODULE__, :hold, [List.duplicate(i, 5_000 + 331 * i)])

    queued =
      for i <- 1..40 do
        pid = spawn(__MODULE__, :hold, [[]])
        for m <- 1..(100 + 7 * i), do: send(pid, {:m, m})
        pid
      end

    small ++ big ++ queued
  end

  def hold(data) do
    receive do
      :stop -> length(data)
    end
  end

  def holder?(pid) do
    match?({:current_function, {__MODULE__, :hold, 1}}, Process.info(pid, :current_function))
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

defmodule Bench.Mem do
  # Peak of erlang:memory(:total) while `fun` runs, minus the value before.
  def growth(fun) do
    :erlang.garbage_collect()
    base = :erlang.memory(:total)
    parent = self()

    sampler =
      spawn(fn ->
        Process.flag(:priority, :high)
        sample(parent, base)
      end)

    t0 = System.monotonic_time(:microsecond)
    result = fun.()
    us = System.monotonic_time(:microsecond) - t0
    send(sampler, {:stop, self()})

    peak =
      receive do
        {:peak, p} -> p
      end

    {us, max(peak, :erlang.memory(:total)) - base, result}
  end

  defp sample(parent, peak) do
    receive do
      {:stop, to} -> send(to, {:peak, max(peak, :erlang.memory(:total))})
    after
      2 -> sample(parent, max(peak, :erlang.memory(:total)))
    end
  end
end

defmodule Bench.Stats do
  def median(xs) do
    s = Enum.sort(xs)
    n = length(s)

    if rem(n, 2) == 1,
      do: Enum.at(s, div(n, 2)),
      else: (Enum.at(s, div(n, 2) - 1) + Enum.at(s, div(n, 2))) / 2
  end

  def spread_pct(xs) do
    m = median(xs)
    if m == 0, do: 0.0, else: Float.round(100 * (Enum.max(xs) - Enum.min(xs)) / m, 1)
  end

  def ms(us), do: Float.round(us / 1000, 1)
  def mb(bytes), do: Float.round(bytes / 1_048_576, 1)
end

defmodule Bench.Compare do
  # {pid, value} lists from both tools, holders only; the same above the
  # higher cut-off.
  def same?(recon, cs) do
    recon = Enum.filter(recon, fn {p, _} -> Bench.Holders.holder?(p) end)
    cs = Enum.filter(cs, fn {p, _} -> Bench.Holders.holder?(p) end)

    case {recon, cs} do
      {[], []} ->
        true

      {[], _} ->
        false

      {_, []} ->
        false

      _ ->
        cut =
          max(
            recon |> Enum.map(&elem(&1, 1)) |> Enum.min(),
            cs |> Enum.map(&elem(&1, 1)) |> Enum.min()
          )

        above = fn list -> list |> Enum.filter(fn {_, v} -> v > cut end) |> MapSet.new() end
        above.(recon) == above.(cs)
    end
  end
end

alias Bench.Stats

cs_top = fn key ->
  fn ->
    {:ok, %{processes: rows, node_errors: errors}} =
      Procs.list(sort_by: key, limit: 20, max_age_ms: 0, timeout: 60_000)

    if errors != [], do: raise("ClusterScope answered with node errors: #{inspect(errors)}")
    if length(rows) != 20, do: raise("ClusterScope answered #{length(rows)} rows, not 20")

    Enum.map(rows, fn row ->
      {:ok, ref} = ClusterScope.ProcessRef.parse(row.pid, [node()])
      {:ok, pid} = ClusterScope.ProcessRef.to_local_pid(ref)
      {pid, Map.fetch!(row, key)}
    end)
  end
end

recon_top = fn key ->
  fn -> Enum.map(:recon.proc_count(key, 20), fn {pid, v, _} -> {pid, v} end) end
end

# Interleaved rounds; returns a RESULT line.
compare = fn label, processes, n_rounds, recon_fun, cs_fun, extra, same_fun ->
  runs =
    for round <- 1..n_rounds do
      order = if rem(round, 2) == 1, do: [:recon, :cs], else: [:cs, :recon]

      results =
        for side <- order, into: %{} do
          fun = if side == :recon, do: recon_fun, else: cs_fun
          {us, grow, answer} = Bench.Mem.growth(fun)
          {side, {us, grow, answer}}
        end

      {r_us, r_mem, r_ans} = results.recon
      {c_us, c_mem, c_ans} = results.cs
      same = same_fun.(r_ans, c_ans)

      IO.puts(
        "  #{label} round #{round}: recon #{Stats.ms(r_us)} ms (+#{Stats.mb(r_mem)} MB), " <>
          "ClusterScope #{Stats.ms(c_us)} ms (+#{Stats.mb(c_mem)} MB), same answer: #{same}"
      )

      %{r_us: r_us, r_mem: r_mem, c_us: c_us, c_mem: c_mem, same: same}
    end

  r_ms = Stats.median(Enum.map(runs, & &1.r_us)) / 1000
  c_ms = Stats.median(Enum.map(runs, & &1.c_us)) / 1000
  r_mem = Stats.median(Enum.map(runs, & &1.r_mem))
  c_mem = Stats.median(Enum.map(runs, & &1.c_mem))

  "RESULT bench=process_aggregation case=#{label} processes=#{processes} rounds=#{n_rounds} " <>
    "recon_ms=#{Float.round(r_ms, 1)} clusterscope_ms=#{Float.round(c_ms, 1)} " <>
    "ratio=#{Float.round(r_ms / max(c_ms, 0.001), 2)} " <>
    "recon_spread_pct=#{Stats.spread_pct(Enum.map(runs, & &1.r_us))} " <>
    "clusterscope_spread_pct=#{Stats.spread_pct(Enum.map(runs, & &1.c_us))} " <>
    "recon_mem_mb=#{Stats.mb(r_mem)} clusterscope_mem_mb=#{Stats.mb(c_mem)} " <>
    "mem_ratio=#{Float.round(r_mem / max(c_mem, 1), 1)} " <>
    "same_answer=#{Enum.all?(runs, & &1.same)}" <> extra
end

cs_only = fn label, processes, n_rounds, cs_fun ->
  runs =
    for _ <- 1..n_rounds do
      {us, grow, _} = Bench.Mem.growth(cs_fun)
      {us, grow}
    end

  "RESULT bench=process_aggregation case=#{label} processes=#{processes} rounds=#{n_rounds} " <>
    "recon_ms=n/a clusterscope_ms=#{Stats.ms(Stats.median(Enum.map(runs, &elem(&1, 0))))} " <>
    "clusterscope_spread_pct=#{Stats.spread_pct(Enum.map(runs, &elem(&1, 0)))} " <>
    "clusterscope_mem_mb=#{Stats.mb(Stats.median(Enum.map(runs, &elem(&1, 1))))} recon=unavailable"
end

top_cases = fn count, label ->
  holders = Bench.Holders.spawn_many(count)
  Process.sleep(500)
  processes = :erlang.system_info(:process_count)
  IO.puts("#{label}: #{processes} processes, load #{Bench.Load.uptime()}")

  lines =
    for {key, name} <- [{:memory, "top20"}, {:message_queue_len, "top20_queue"}] do
      line =
        if recon?,
          do:
            compare.(
              "#{name}_#{label}",
              processes,
              rounds,
              recon_top.(key),
              cs_top.(key),
              "",
              &Bench.Compare.same?/2
            ),
          else: cs_only.("#{name}_#{label}", processes, rounds, cs_top.(key))

      IO.puts(line)
      line
    end

  {lines, holders}
end

window_case = fn count, label ->
  holders = Bench.Holders.spawn_many(count)
  # Four busy processes at about half a scheduler each (work 5 ms, sleep
  # 5 ms): they must lead both tools' windows.
  busy = for _ <- 1..4, do: spawn(fn -> Bench.Holders.duty_cycle() end)
  Process.sleep(500)
  processes = :erlang.system_info(:process_count)

  cs_window = fn ->
    {:ok, %{processes: rows, node_errors: []}} =
      Procs.list(window_ms: 1_000, sort_by: :reductions, limit: 20, timeout: 120_000)

    Enum.map(rows, fn row ->
      {:ok, ref} = ClusterScope.ProcessRef.parse(row.pid, [node()])
      {:ok, pid} = ClusterScope.ProcessRef.to_local_pid(ref)
      {pid, row.reductions_delta}
    end)
  end

  busy_found = fn answer ->
    Enum.count(busy, fn p -> Enum.any?(answer, &(elem(&1, 0) == p)) end)
  end

  line =
    if recon? do
      recon_window = fn ->
        Enum.map(:recon.proc_window(:reductions, 20, 1_000), fn {pid, v, _} -> {pid, v} end)
      end

      # Reductions change between the two tools' windows: the answers are
      # compared on the four busy processes both must find, not value by
      # value.
      compare.(
        "window_#{label}",
        processes,
        window_rounds,
        recon_window,
        cs_window,
        " window_ms=1000",
        fn r, c -> busy_found.(r) == 4 and busy_found.(c) == 4 end
      )
    else
      cs_only.("window_#{label}", processes, window_rounds, cs_window)
    end

  IO.puts(line)
  Bench.Holders.stop(busy)
  Bench.Holders.stop(holders)
  line
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

# The Elixir baseline (aggregation only, after collection) on the holders
# of the first size.
aggregate_line = fn label ->
  {:ok, snapshot, stats} = Collector.collect()
  node_name = Atom.to_string(node())

  rust_us =
    Enum.min(
      for _ <- 1..3 do
        {us, {:ok, _}} = :timer.tc(fn -> Native.procs_summary(snapshot, node_name, %{k: 20}) end)
        us
      end
    )

  {rows, _} = Rows.rows(Process.list(), :pid, Rows.context())
  {elixir_us, _} = :timer.tc(fn -> Bench.ElixirAggregate.run(rows, 20) end)

  "RESULT bench=process_aggregation case=aggregate_#{label} processes=#{stats.processes} " <>
    "rust_ms=#{Stats.ms(rust_us)} elixir_ms=#{Stats.ms(elixir_us)} ratio=#{Float.round(elixir_us / rust_us, 1)}"
end

# What one process_info item costs per process, one scheduler, every
# process of the node (median of interleaved passes). On OTP 25 `memory`
# (and `total_heap_size`) is answered by the process itself through a
# signal, so every process is scheduled once; `heap_size`, `reductions`
# and `message_queue_len` are read under its lock without that. Any exact
# top-K by memory pays the signal for every process, as recon does; the
# ceiling of the ratio is recon's four items over one `memory` read spread
# on the schedulers online.
defmodule Bench.ItemCost do
  @items [
    memory: :memory,
    total_heap_size: :total_heap_size,
    heap_size: :heap_size,
    reductions: :reductions,
    message_queue_len: :message_queue_len,
    recon_items: [:memory, :registered_name, :current_function, :initial_call]
  ]

  def line(label, passes \\ 5) do
    pids = :erlang.processes()
    n = length(pids)

    times =
      for r <- 1..passes, {name, item} <- rotate(@items, r), reduce: %{} do
        acc ->
          {us, :ok} = :timer.tc(fn -> Enum.each(pids, &:erlang.process_info(&1, item)) end)
          Map.update(acc, name, [us], &[us | &1])
      end

    ns = Map.new(times, fn {name, us} -> {name, Bench.Stats.median(us) * 1000 / n} end)
    schedulers = :erlang.system_info(:schedulers_online)
    ceiling = ns.recon_items / (ns.memory / schedulers)

    "RESULT bench=process_aggregation case=item_cost_#{label} processes=#{n} passes=#{passes} " <>
      Enum.map_join(@items, " ", fn {name, _} -> "#{name}_ns=#{Float.round(ns[name], 1)}" end) <>
      " memory_over_heap_size=#{Float.round(ns.memory / ns.heap_size, 2)}" <>
      " schedulers=#{schedulers} exact_top_memory_ratio_ceiling=#{Float.round(ceiling, 2)}"
  end

  # Each pass starts with another item, so no item always runs first.
  defp rotate(items, r) do
    {a, b} = Enum.split(items, rem(r, length(items)))
    b ++ a
  end
end

started = System.monotonic_time(:millisecond)

IO.puts(
  "load average at start: #{Bench.Load.uptime()}; schedulers: #{:erlang.system_info(:schedulers_online)}"
)

{small_lines, agg} =
  if System.get_env("SKIP_SMALL") == "1" do
    {[], "RESULT bench=process_aggregation case=aggregate_100k skipped=SKIP_SMALL"}
  else
    {small_lines, small_holders} = top_cases.(100_000, "100k")
    agg = aggregate_line.("100k")
    IO.puts(agg)
    cost = Bench.ItemCost.line("100k")
    IO.puts(cost)
    Bench.Holders.stop(small_holders)
    Process.sleep(1_000)
    {small_lines ++ [cost], agg}
  end

big_lines =
  if System.get_env("SKIP_TOP") == "1" do
    []
  else
    {big_lines, big_holders} = top_cases.(big, big_label)
    Bench.Holders.stop(big_holders)
    Process.sleep(2_000)
    big_lines
  end

window =
  if System.get_env("SKIP_WINDOW") == "1",
    do: "RESULT bench=process_aggregation case=window_#{window_label} skipped=SKIP_WINDOW",
    else: window_case.(window_size, window_label)

IO.puts(
  "load average at end: #{Bench.Load.uptime()}; #{div(System.monotonic_time(:millisecond) - started, 1000)} s"
)

Enum.each(small_lines ++ big_lines ++ [window, agg], &IO.puts/1)
