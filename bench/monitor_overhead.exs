# The CPU cost of the health monitor (ClusterScope.Health.Monitor) at its
# default interval, on a node with many idle processes.
#
#     MIX_BUILD_ROOT=/tmp/health_build mix run bench/monitor_overhead.exs
#     QUICK=1 mix run bench/monitor_overhead.exs     # 20,000 processes, 10 s windows
#
# Spawns the processes, waits until the monitor has scanned them all once,
# then measures the VM's CPU time (the run time of every thread of this OS
# process from /proc/self/task/*/schedstat, in nanoseconds, or
# :erlang.statistics(:runtime) elsewhere) over three
# windows: monitor suspended (:sys.suspend), monitor running, suspended
# again. The monitor's cost is the running window's CPU minus the mean of the
# two suspended ones (which cancels a slow drift of the background), as a %
# of one core. It also prints the monitor's own measurement of its cost.

alias ClusterScope.Health
alias ClusterScope.Health.Monitor

quick? = System.get_env("QUICK") in ["1", "true"]
count = if quick?, do: 20_000, else: 100_000
window_ms = if quick?, do: 10_000, else: 30_000

defmodule Bench.CPU do
  # CPU time of this OS process (every thread) in microseconds: the sum of
  # the per-thread run times of /proc/self/task/*/schedstat (nanoseconds),
  # or :erlang.statistics(:runtime) (milliseconds) where there is no /proc.
  def now_us do
    case Path.wildcard("/proc/self/task/*/schedstat") do
      [] ->
        {ms, _} = :erlang.statistics(:runtime)
        ms * 1_000

      files ->
        ns =
          Enum.reduce(files, 0, fn file, acc ->
            case File.read(file) do
              {:ok, text} -> acc + (text |> String.split(" ") |> hd() |> String.to_integer())
              # A thread that ended between the listing and the read.
              _ -> acc
            end
          end)

        div(ns, 1_000)
    end
  end

  def source do
    if Path.wildcard("/proc/self/task/*/schedstat") != [],
      do: "/proc/self/task/*/schedstat (every thread)",
      else: "statistics(:runtime)"
  end

  # CPU % of one core over `ms` of wall time.
  def window(ms) do
    c0 = now_us()
    t0 = System.monotonic_time(:microsecond)
    Process.sleep(ms)
    c1 = now_us()
    t1 = System.monotonic_time(:microsecond)
    (c1 - c0) * 100 / (t1 - t0)
  end
end

Bench.CPU.now_us()
{:ok, _} = Health.configure_sampling(:defaults)
status = Health.status()

IO.puts(
  "monitor_overhead: #{count} idle processes, #{div(window_ms, 1000)} s windows, " <>
    "interval #{status.interval_ms} ms, #{:erlang.system_info(:schedulers_online)} schedulers, " <>
    "CPU time from #{Bench.CPU.source()}"
)

{spawn_us, pids} =
  :timer.tc(fn -> for _ <- 1..count, do: spawn(fn -> receive do: (:stop -> :ok) end) end)

IO.puts("spawned #{count} processes in #{div(spawn_us, 1000)} ms")

# Wait for a complete scan that saw them all (at most every 10 s).
deadline = System.monotonic_time(:millisecond) + 40_000

wait_scan = fn wait_scan ->
  mq = Health.status().collectors.message_queues

  cond do
    (mq.processes_scanned || 0) >= count and not mq.running ->
      mq

    System.monotonic_time(:millisecond) > deadline ->
      IO.puts("the monitor did not complete a scan of every process within 40 s: #{inspect(mq)}")
      mq

    true ->
      Process.sleep(200)
      wait_scan.(wait_scan)
  end
end

mq = wait_scan.(wait_scan)

IO.puts(
  "scan: #{mq.processes_scanned} processes in #{Float.round((mq.cost_us || 0) / 1000, 1)} ms " <>
    "(#{mq.reductions} reductions), next scan every #{mq.period_ms} ms"
)

# Let the scan's garbage go before measuring.
Process.sleep(1_000)
monitor = Process.whereis(Monitor)

suspended = fn ms ->
  :sys.suspend(monitor)
  pct = Bench.CPU.window(ms)
  :sys.resume(monitor)
  pct
end

b1 = suspended.(div(window_ms, 2))
taken = Health.status().samples_taken
a = Bench.CPU.window(window_ms)
samples = Health.status().samples_taken - taken
b2 = suspended.(div(window_ms, 2))

baseline = (b1 + b2) / 2
monitor_pct = a - baseline
status = Health.status()
cost = status.own_cost
mq = status.collectors.message_queues
typical_ms = (cost.typical_sample_us || 0) / 1000
own_pct = cost.total_fraction * 100

IO.puts("CPU, monitor suspended:  #{Float.round(b1, 3)}% then #{Float.round(b2, 3)}% of one core")
IO.puts("CPU, monitor running:    #{Float.round(a, 3)}% of one core (#{samples} samples)")
IO.puts("monitor (difference):    #{Float.round(monitor_pct, 3)}% of one core (target <= 1%)")

IO.puts(
  "monitor's own measure:   sample #{Float.round(typical_ms, 3)} ms typical, " <>
    "last #{Float.round(cost.last_sample_us / 1000, 3)} ms (#{cost.last_sample_reductions} reductions); " <>
    "scan #{Float.round((mq.cost_us || 0) / 1000, 1)} ms every #{mq.period_ms} ms; " <>
    "total #{Float.round(own_pct, 3)}% of one core, throttled: #{status.throttled}"
)

Enum.each(pids, &send(&1, :stop))

IO.puts(
  "RESULT bench=monitor_overhead processes=#{count} " <>
    "monitor_cpu_pct=#{:erlang.float_to_binary(monitor_pct, decimals: 3)} " <>
    "baseline_cpu_pct=#{:erlang.float_to_binary(baseline, decimals: 3)} " <>
    "sample_cost_ms=#{:erlang.float_to_binary(typical_ms, decimals: 3)} " <>
    "interval_ms=#{status.interval_ms}"
)
