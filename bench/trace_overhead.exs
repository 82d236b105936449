# What tracing a hot function costs the traced code: no tracing (baseline),
# a ClusterScope session throttled to 1,000 events/s, and plain :dbg tracing
# to a process (what users do today), in one run.
#
#   MIX_ENV=test mix run bench/trace_overhead.exs      (QUICK=1: shorter runs)
#
# One process calls Bench.Traced.step/1 as fast as it can for a fixed time
# (one scheduler); runs alternate baseline / traced so drift in the
# machine's load hits both; medians are reported. ClusterScope's tracer
# reports its own peak mailbox and memory; :dbg's tracer is sampled every
# 5 ms from outside.

defmodule Bench.Traced do
  def step(x), do: x + 1

  def drive_for(ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    loop(deadline, 0)
  end

  defp loop(deadline, n) do
    n = burst(1_000, n)
    if System.monotonic_time(:millisecond) < deadline, do: loop(deadline, n), else: n
  end

  defp burst(0, n), do: n
  defp burst(k, n), do: burst(k - 1, __MODULE__.step(n))
end

defmodule Bench.Sampler do
  # Peak message queue and memory of `pid` until told to stop.
  def start(pid_fun) do
    parent = self()
    spawn(fn -> loop(pid_fun, parent, 0, 0) end)
  end

  def stop(sampler) do
    send(sampler, {:stop, self()})

    receive do
      {:peaks, q, m} -> {q, m}
    end
  end

  defp loop(pid_fun, parent, q, m) do
    receive do
      {:stop, to} -> send(to, {:peaks, q, m})
    after
      5 ->
        {q, m} =
          case pid_fun.() do
            pid when is_pid(pid) ->
              case Process.info(pid, [:message_queue_len, :memory]) do
                [message_queue_len: q1, memory: m1] -> {max(q, q1), max(m, m1)}
                nil -> {q, m}
              end

            _ ->
              {q, m}
          end

        loop(pid_fun, parent, q, m)
    end
  end
end

quick? = System.get_env("QUICK") == "1"
run_ms = if quick?, do: 1_000, else: 2_000
rounds = if quick?, do: 3, else: 5

unless ClusterScope.Native.loaded?(), do: raise("the native core is not loaded")

drive = fn ->
  task = Task.async(fn -> Bench.Traced.drive_for(run_ms) end)
  Task.await(task, :infinity) * 1000 / run_ms
end

median = fn list ->
  sorted = Enum.sort(list)
  Enum.at(sorted, div(length(sorted), 2))
end

cost_ns = ClusterScope.Trace.Calibration.event_cost_ns()
IO.puts("calibrated cost of one trace event here: #{cost_ns} ns")

# Baseline and ClusterScope, alternating.
{base, cs, peaks, kept} =
  Enum.reduce(1..rounds, {[], [], {0, 0}, 0}, fn _, {base, cs, {pq, pm}, kept} ->
    b = drive.()

    {:ok, s} =
      ClusterScope.Trace.start(%{
        module: "Bench.Traced",
        function: "step",
        arity: "1",
        rate: 1_000,
        max_events: 10_000_000,
        duration_ms: 600_000,
        nodes: [node()]
      })

    t = drive.()
    {:ok, stopped} = ClusterScope.Trace.stop(s.id)
    # The tracer measures its own peaks (every 32 events): sampling it from
    # outside would make it answer signals in the middle of a burst.
    %{kept: k, stop_reason: why, seen: seen, peak_queue: q, peak_memory_bytes: m} =
      stopped.per_node[node()]

    IO.puts(
      "  run: #{round(b)} calls/s untraced, #{round(t)} traced; kept #{k} of #{seen} seen; ended by #{why}"
    )

    {[b | base], [t | cs], {max(pq, q), max(pm, m)}, kept + k}
  end)

base_rate = median.(base)
cs_rate = median.(cs)
cs_overhead = (1 - cs_rate / base_rate) * 100
{cs_q, cs_m} = peaks

# :dbg to a process: every call becomes a message; nothing bounds the
# tracer's mailbox but the length of the run.
dbg_rates =
  for _ <- 1..rounds do
    b = drive.()
    {:ok, _} = :dbg.tracer(:process, {fn _msg, n -> n + 1 end, 0})
    {:ok, _} = :dbg.p(:all, :c)
    {:ok, _} = :dbg.tpl(Bench.Traced, :step, 1, [])
    dbg_pid = Process.whereis(:dbg)
    {:ok, tracer} = :dbg.get_tracer()
    sampler = Bench.Sampler.start(fn -> tracer end)
    d = drive.()
    {q, m} = Bench.Sampler.stop(sampler)
    :dbg.stop()
    _ = dbg_pid
    {b, d, q, m}
  end

dbg_base = median.(Enum.map(dbg_rates, &elem(&1, 0)))
dbg_rate = median.(Enum.map(dbg_rates, &elem(&1, 1)))
dbg_q = dbg_rates |> Enum.map(&elem(&1, 2)) |> Enum.max()
dbg_m = dbg_rates |> Enum.map(&elem(&1, 3)) |> Enum.max()
dbg_overhead = (1 - dbg_rate / dbg_base) * 100

mb = fn bytes -> Float.round(bytes / 1_048_576, 2) end
fmt = fn x -> Float.round(x * 1.0, 1) end

IO.puts(
  "baseline #{round(base_rate)} calls/s; ClusterScope (1,000 events/s) #{round(cs_rate)} calls/s " <>
    "(#{fmt.(cs_overhead)}% slower, #{kept} events kept in #{rounds} runs); " <>
    ":dbg #{round(dbg_rate)} calls/s (#{fmt.(dbg_overhead)}% slower)"
)

IO.puts(
  "RESULT bench=trace_overhead baseline_calls_per_s=#{round(base_rate)} " <>
    "throttled_calls_per_s=#{round(cs_rate)} throttled_overhead_pct=#{fmt.(cs_overhead)} " <>
    "dbg_calls_per_s=#{round(dbg_rate)} dbg_overhead_pct=#{fmt.(dbg_overhead)} " <>
    "tracer_peak_queue=#{cs_q} tracer_peak_mb=#{mb.(cs_m)} dbg_peak_queue=#{dbg_q} " <>
    "dbg_peak_mb=#{mb.(dbg_m)} event_cost_ns=#{cost_ns} run_ms=#{run_ms} rounds=#{rounds}"
)
