# Heartbeat cost against cluster size: real peers at 4, 12 and 24 nodes,
# idle, ClusterScope on every node; then the gossip code path simulated for
# one node among 100 and 1,000.
#
#   MIX_ENV=test mix run bench/heartbeat_scale.exs          # 4, 12, 24 nodes
#   QUICK=1 MIX_ENV=test mix run bench/heartbeat_scale.exs  # 4 and 8 nodes, short windows
#   SIZES=4,24 WINDOW_S=20 ROUNDS=3 ...                     # other sizes or lengths
#
# Method (real peers):
#
#   * CPU per node: the OS CPU time (utime + stime from /proc/PID/stat) of
#     every peer's VM over a window with ClusterScope's cluster processes
#     (Cluster.Heartbeat and Cluster.State) running, minus the same over a
#     window with both suspended on every node (:sys.suspend), in interleaved
#     rounds (running, suspended, running, ...; median of the per-round
#     differences). The difference is what the cluster processes cost the VM,
#     scheduler wake-ups and distribution included, and nothing else that
#     runs there (health sampling, other applications); the machine's other
#     load touches both windows alike. Printed as % of one core per node,
#     with the raw running figure next to it (what the issue's table shows).
#   * Per process (the issue's other method, in the diagnostic window): the
#     CPU time the cluster processes and the distribution ports to the other
#     peers spend running, from a `:running`/`:running_ports` trace with CPU
#     timestamps (each scheduler thread's CPU clock, schedule-in to
#     schedule-out), as % of a core per node. It leaves out what the VM's
#     schedulers do between runs: spinning before they sleep (`+sbwt`, a VM
#     setting ClusterScope cannot change), which the OS figure includes.
#   * SBWT=none starts the peers with `+sbwt none +sbwtdcpu none +sbwtdio
#     none` (no busy wait; advised where many VMs share few cores) and says
#     so in the RESULT lines.
#   * Reductions of the two processes per second per node, as a second view
#     of the same work.
#   * Bytes: `:inet.getstat/2` of every distribution socket between peers
#     (`:erlang.system_info(:dist_ctrl)`, the bench node's own link
#     excluded): send_oct per second per node, and send_oct / send_cnt as the
#     bytes per message, over the running windows.
#   * Where it goes (after the measured rounds, MSACC=0 skips it): one more
#     running / suspended pair with microstate accounting on every peer
#     (`erlang:statistics(microstate_accounting)`, which costs a little
#     itself, so it stays out of the measured rounds): the difference per
#     state summed over the VM's threads, as % of a core per node (msacc
#     counts wall time in each state, so on a contended machine its sum is
#     above the OS figure; the shares are what it tells): `emulator` (Erlang
#     code), `port` (the distribution sockets' sends and receives),
#     `check_io` (polling), `other` (mostly schedulers spinning after a
#     wake-up before they sleep), `gc`, `aux`. Next to it the OS thread
#     wake-ups (voluntary context switches of the VM's threads), Erlang
#     process switches, and how often Heartbeat and State are scheduled in
#     (a 5 s `:running` trace).
#
# Simulated: one node among N (100, 1,000) in steady state: per interval it
# ticks (own view, prune, digest, wants), encodes its beat for N - 1 peers
# (term_to_binary, as the distribution does per destination), decodes N - 1
# beats and merges them. Median over the intervals; a second figure has one
# view change per interval (one beat carries N entries), a third adds the
# phi detectors (one heartbeat per arrival, one phi_all per interval). On a
# tree without ClusterScope.Cluster.Gossip (before the change) the old path
# is simulated instead: a beat with up to 64 gossiped views of N - 1
# entries, merged per view.

alias ClusterScope.LocalCluster
alias ClusterScope.Test.Cluster

quick = System.get_env("QUICK") == "1"

sizes =
  case System.get_env("SIZES") do
    nil -> if quick, do: [4, 8], else: [4, 12, 24]
    list -> list |> String.split(",", trim: true) |> Enum.map(&String.to_integer/1)
  end

window_s = String.to_integer(System.get_env("WINDOW_S") || if(quick, do: "8", else: "20"))
rounds = String.to_integer(System.get_env("ROUNDS") || if(quick, do: "1", else: "2"))
sim_sizes = [100, 1_000]
interval = 200

{:module, probe, probe_bin, _} =
  defmodule HeartbeatScale.Probe do
    @moduledoc false
    @procs [ClusterScope.Cluster.Heartbeat, ClusterScope.Cluster.State]

    # {send_oct, send_cnt} over the distribution sockets to other peers.
    def dist(exclude) do
      for {node, ctrl} <- :erlang.system_info(:dist_ctrl),
          node != exclude,
          is_port(ctrl),
          reduce: {0, 0} do
        {oct, cnt} ->
          case :inet.getstat(ctrl, [:send_oct, :send_cnt]) do
            {:ok, s} -> {oct + s[:send_oct], cnt + s[:send_cnt]}
            _ -> {oct, cnt}
          end
      end
    end

    def reductions do
      for name <- @procs, pid = Process.whereis(name), pid != nil, reduce: 0 do
        acc ->
          case Process.info(pid, :reductions) do
            {:reductions, r} -> acc + r
            _ -> acc
          end
      end
    end

    def sample(exclude), do: {dist(exclude), reductions()}

    # Microstate accounting (diagnostic window only): time per thread type
    # and state, in microseconds, since msacc_on/0.
    def msacc_on do
      :erlang.system_flag(:microstate_accounting, :reset)
      :erlang.system_flag(:microstate_accounting, true)
      :erlang.statistics(:context_switches) |> elem(0)
    end

    def msacc_off do
      stats = :erlang.statistics(:microstate_accounting)
      :erlang.system_flag(:microstate_accounting, false)
      cs = :erlang.statistics(:context_switches) |> elem(0)

      by =
        for %{type: type, counters: c} <- stats, {st, t} <- c, reduce: %{} do
          acc ->
            us = :erlang.convert_time_unit(t, :perf_counter, :microsecond)
            Map.update(acc, {type, st}, us, &(&1 + us))
        end

      {by, cs}
    end

    # How many times each cluster process is scheduled in over `ms`.
    def schedule_counts(ms) do
      pids = for name <- @procs, pid = Process.whereis(name), pid != nil, do: {name, pid}
      parent = self()

      counter =
        spawn(fn ->
          loop = fn loop, acc ->
            receive do
              {:trace, pid, :in, _} -> loop.(loop, Map.update(acc, pid, 1, &(&1 + 1)))
              {:done, from} -> send(from, {:counts, acc})
              _ -> loop.(loop, acc)
            end
          end

          loop.(loop, %{})
        end)

      for {_, pid} <- pids, do: :erlang.trace(pid, true, [:running, {:tracer, counter}])
      Process.sleep(ms)
      for {_, pid} <- pids, do: :erlang.trace(pid, false, [:running])
      send(counter, {:done, parent})

      counts =
        receive do
          {:counts, c} -> c
        after
          5_000 -> %{}
        end

      Map.new(pids, fn {name, pid} -> {name, Map.get(counts, pid, 0)} end)
    end

    # CPU time of the cluster processes and of the distribution ports to
    # other peers (their sends and receives) over `ms`: a `:running` /
    # `:running_ports` trace with CPU timestamps (the scheduler thread's own
    # CPU clock), summed from each schedule-in to its schedule-out. What the
    # schedulers do between runs (spinning before they sleep) is not in it.
    # Returns {process_us, port_us}.
    def traced_cpu(ms, exclude) do
      pids = for name <- @procs, pid = Process.whereis(name), pid != nil, do: pid

      ports =
        for {node, ctrl} <- :erlang.system_info(:dist_ctrl),
            node != exclude,
            is_port(ctrl),
            do: ctrl

      parent = self()
      tracer = spawn(fn -> cpu_loop(%{}, {0, 0}, parent) end)
      :erlang.trace(:all, true, [:cpu_timestamp])
      for pid <- pids, do: :erlang.trace(pid, true, [:running, :timestamp, {:tracer, tracer}])

      for port <- ports,
          do: :erlang.trace(port, true, [:running_ports, :timestamp, {:tracer, tracer}])

      Process.sleep(ms)
      for pid <- pids, do: catch_untrace(pid, [:running, :timestamp])
      for port <- ports, do: catch_untrace(port, [:running_ports, :timestamp])
      :erlang.trace(:all, false, [:cpu_timestamp])
      send(tracer, :done)

      receive do
        {:traced_cpu, totals} -> totals
      after
        10_000 -> {0, 0}
      end
    end

    defp catch_untrace(who, flags) do
      :erlang.trace(who, false, flags)
    catch
      :error, _ -> 0
    end

    defp cpu_loop(open, {procs, ports} = totals, parent) do
      receive do
        {:trace_ts, who, :in, _, ts} ->
          cpu_loop(Map.put(open, who, ts), totals, parent)

        {:trace_ts, who, :out, _, ts} ->
          case Map.pop(open, who) do
            {nil, open} ->
              cpu_loop(open, totals, parent)

            {t0, open} ->
              us = :timer.now_diff(ts, t0)

              totals = if is_port(who), do: {procs, ports + us}, else: {procs + us, ports}

              cpu_loop(open, totals, parent)
          end

        {:trace_ts, _, _, _, _} ->
          cpu_loop(open, totals, parent)

        :done ->
          send(parent, {:traced_cpu, totals})
      end
    end

    def suspend, do: Enum.each(@procs, &:sys.suspend/1)
    def resume, do: @procs |> Enum.reverse() |> Enum.each(&:sys.resume/1)
  end

defmodule HeartbeatScale do
  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.{Cluster, NodeWatcher}

  def now, do: System.monotonic_time(:millisecond)

  def start(count) do
    {:ok, peers} =
      LocalCluster.start_peers(count,
        aliases: true,
        alias_base: Cluster.alias_base(),
        connection: :standard_io,
        link: false,
        connect: false,
        args: ["-kernel", "logger_level", "error"] ++ sbwt_args() ++ Cluster.interval_args()
      )

    for p <- peers, do: {:ok, _} = LocalCluster.call(p, NodeWatcher, :start, [])
    :ok = LocalCluster.connect_mesh(peers, :hidden)

    Cluster.poll(now() + 60_000, fn -> healthy?(peers) end) ||
      raise "#{count} peers did not become healthy"

    peers
  end

  def sbwt_args do
    if System.get_env("SBWT") == "none",
      do: ["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"],
      else: []
  end

  def healthy?(peers) do
    Enum.all?(peers, fn p ->
      match?(
        {:ok, %{classification: %{status: :healthy}, heartbeat: %{peers: phis}}}
        when map_size(phis) == length(peers) - 1,
        safe_run(p, "partition_status")
      )
    end)
  end

  def safe_run(peer, op) do
    LocalCluster.call(peer, ClusterScope, :run, [op, %{}], 5_000)
  catch
    _, _ -> :error
  end

  def cpu_ticks(peer) do
    [_, rest] = File.read!("/proc/#{peer.os_pid}/stat") |> String.split(") ", parts: 2)
    fields = String.split(rest, " ")
    String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))
  end

  def snapshot(peers, probe) do
    Enum.map(peers, fn p ->
      {dist, reds} = LocalCluster.call(p, probe, :sample, [node()], 10_000)
      %{cpu: cpu_ticks(p), dist: dist, reds: reds, at: now()}
    end)
  end

  # Per-node averages over one window.
  def window(peers, probe, seconds) do
    before = snapshot(peers, probe)
    Process.sleep(seconds * 1_000)
    after_ = snapshot(peers, probe)

    per_node =
      Enum.zip_with(after_, before, fn a, b ->
        s = (a.at - b.at) / 1_000
        {oct, cnt} = {elem(a.dist, 0) - elem(b.dist, 0), elem(a.dist, 1) - elem(b.dist, 1)}
        # clock ticks are 1/100 s: % of one core.
        %{
          cpu: (a.cpu - b.cpu) / s,
          bytes_s: oct / s,
          oct: oct,
          cnt: cnt,
          reds_s: (a.reds - b.reds) / s
        }
      end)

    n = length(per_node)
    avg = fn key -> Enum.sum(Enum.map(per_node, & &1[key])) / n end
    cnt = Enum.sum(Enum.map(per_node, & &1.cnt))

    %{
      cpu: avg.(:cpu),
      bytes_s: avg.(:bytes_s),
      reds_s: avg.(:reds_s),
      bytes_msg: if(cnt > 0, do: Enum.sum(Enum.map(per_node, & &1.oct)) / cnt, else: 0.0)
    }
  end

  def median(list) do
    sorted = Enum.sort(list)
    n = length(sorted)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, div(n, 2)),
      else: (Enum.at(sorted, div(n, 2) - 1) + Enum.at(sorted, div(n, 2))) / 2
  end

  def measure(peers, probe, rounds, seconds) do
    results =
      for r <- 1..rounds do
        running = window(peers, probe, seconds)
        for p <- peers, do: LocalCluster.call(p, probe, :suspend, [], 10_000)
        Process.sleep(1_000)
        suspended = window(peers, probe, seconds)
        for p <- peers, do: LocalCluster.call(p, probe, :resume, [], 10_000)

        IO.puts(
          "  round #{r}: running #{f(running.cpu, 3)}% suspended #{f(suspended.cpu, 3)}% " <>
            "sent #{round(running.bytes_s)} B/s (#{f(running.bytes_msg, 1)} B/msg), " <>
            "suspended #{round(suspended.bytes_s)} B/s; #{round(running.reds_s)} reductions/s"
        )

        # Detectors and views settle after the pause before the next window.
        Process.sleep(4_000)
        %{running: running, suspended: suspended}
      end

    %{
      cpu: median(Enum.map(results, &max(&1.running.cpu - &1.suspended.cpu, 0.0))),
      running_cpu: median(Enum.map(results, & &1.running.cpu)),
      bytes_s: median(Enum.map(results, & &1.running.bytes_s)),
      bytes_msg: median(Enum.map(results, & &1.running.bytes_msg)),
      reds_s: median(Enum.map(results, & &1.running.reds_s))
    }
  end

  def f(x, d), do: :erlang.float_to_binary(x * 1.0, decimals: d)

  # OS thread wake-ups of a peer's VM: voluntary context switches summed over
  # its threads (a thread that sleeps and is woken counts one).
  def os_wakeups(peer) do
    Path.wildcard("/proc/#{peer.os_pid}/task/*/status")
    |> Enum.reduce(0, fn path, acc ->
      case File.read(path) do
        {:ok, text} ->
          case Regex.run(~r/^voluntary_ctxt_switches:\s+(\d+)/m, text) do
            [_, n] -> acc + String.to_integer(n)
            _ -> acc
          end

        _ ->
          acc
      end
    end)
  end

  # One window with microstate accounting on every peer: per node and per
  # second, microseconds by {thread type, state}, OS thread wake-ups, and
  # Erlang process context switches.
  def msacc_window(peers, probe, seconds) do
    t0 = now()

    starts =
      Enum.map(peers, &{os_wakeups(&1), LocalCluster.call(&1, probe, :msacc_on, [], 10_000)})

    Process.sleep(seconds * 1_000)

    ends =
      Enum.map(peers, &{LocalCluster.call(&1, probe, :msacc_off, [], 10_000), os_wakeups(&1)})

    s = (now() - t0) / 1_000
    n = length(peers)

    {msacc, wakeups, switches} =
      Enum.zip(starts, ends)
      |> Enum.reduce({%{}, 0, 0}, fn {{w0, cs0}, {{by, cs1}, w1}}, {m, w, cs} ->
        {Map.merge(m, by, fn _, a, b -> a + b end), w + w1 - w0, cs + cs1 - cs0}
      end)

    %{
      msacc: Map.new(msacc, fn {k, us} -> {k, us / s / n} end),
      os_wakeups: wakeups / s / n,
      switches: switches / s / n
    }
  end

  # Where the running-minus-suspended CPU goes (diagnostic, after the
  # measured rounds: microstate accounting costs a little itself, so it is
  # kept out of them). Figures per node per second.
  def diagnose(peers, probe, seconds) do
    running = msacc_window(peers, probe, seconds)
    for p <- peers, do: LocalCluster.call(p, probe, :suspend, [], 10_000)
    Process.sleep(1_000)
    suspended = msacc_window(peers, probe, seconds)
    for p <- peers, do: LocalCluster.call(p, probe, :resume, [], 10_000)
    Process.sleep(2_000)

    counts =
      peers
      |> Task.async_stream(&LocalCluster.call(&1, probe, :schedule_counts, [5_000], 20_000),
        max_concurrency: length(peers),
        timeout: 30_000
      )
      |> Enum.map(fn {:ok, c} -> c end)
      |> Enum.reduce(%{}, &Map.merge(&1, &2, fn _, a, b -> a + b end))
      |> Map.new(fn {name, c} -> {name, c / 5 / length(peers)} end)

    # Every peer at once, over the same window.
    {procs_us, ports_us} =
      peers
      |> Task.async_stream(
        &LocalCluster.call(
          &1,
          probe,
          :traced_cpu,
          [seconds * 1_000, node()],
          30_000 + seconds * 1_000
        ),
        max_concurrency: length(peers),
        timeout: 60_000 + seconds * 1_000
      )
      |> Enum.reduce({0, 0}, fn {:ok, {a, b}}, {x, y} -> {a + x, b + y} end)

    # % of a core per node: microseconds per second / 10^4.
    per_node = fn us -> us / seconds / length(peers) / 1.0e4 end
    traced = %{processes: per_node.(procs_us), ports: per_node.(ports_us)}

    IO.puts(
      "  per process (traced CPU time, #{seconds} s): cluster processes #{f(traced.processes, 3)}% + " <>
        "distribution ports #{f(traced.ports, 3)}% = #{f(traced.processes + traced.ports, 3)}% of a core per node"
    )

    keys = Enum.uniq(Map.keys(running.msacc) ++ Map.keys(suspended.msacc))

    delta =
      Map.new(keys, fn k ->
        {k, Map.get(running.msacc, k, 0.0) - Map.get(suspended.msacc, k, 0.0)}
      end)

    # Busy states (everything but sleep), summed by state over the thread
    # types, as % of a core: running minus suspended.
    by_state =
      for {{_type, st}, us} <- delta, st != :sleep, reduce: %{} do
        acc -> Map.update(acc, st, us / 1.0e4, &(&1 + us / 1.0e4))
      end

    by_type =
      for {{type, st}, us} <- delta, st != :sleep, reduce: %{} do
        acc -> Map.update(acc, type, us / 1.0e4, &(&1 + us / 1.0e4))
      end

    IO.puts("  msacc running - suspended, % of a core per node, by state: " <> fmt(by_state))
    IO.puts("  by thread type: " <> fmt(by_type))

    IO.puts(
      "  OS thread wake-ups/s per node: running #{round(running.os_wakeups)}, suspended #{round(suspended.os_wakeups)}; " <>
        "process switches/s: running #{round(running.switches)}, suspended #{round(suspended.switches)}; " <>
        "scheduled-in/s: " <>
        Enum.map_join(counts, ", ", fn {name, c} -> "#{inspect(name)} #{f(c, 1)}" end)
    )

    %{
      by_state: by_state,
      traced: traced,
      os_wakeups: running.os_wakeups - suspended.os_wakeups,
      switches: running.switches - suspended.switches,
      counts: counts
    }
  end

  defp fmt(map),
    do: map |> Enum.sort() |> Enum.map_join(" ", fn {k, v} -> "#{k}=#{f(v, 3)}" end)
end

defmodule HeartbeatScale.Sim do
  # One node among n, simulated in this process.
  @moduledoc false

  def names(n), do: for(i <- 0..(n - 1), do: :"sim#{i}@127.0.0.1")

  def run(n, intervals, interval) do
    # The old path takes seconds per interval at 1,000 nodes: one is enough.
    if Code.ensure_loaded?(ClusterScope.Cluster.Gossip),
      do: run_gossip(n, intervals, interval),
      else: run_legacy(n, if(n >= 1_000, do: 1, else: intervals), interval)
  end

  defp run_gossip(n, intervals, interval) do
    alias ClusterScope.Cluster.Gossip
    [me | others] = names(n)
    view = Map.new(others, &{&1, :reachable})
    peer_view = Map.new(names(n), &{&1, :reachable})

    # Warm-up: every peer's first beat carries its view.
    g = Gossip.new(me, interval, 1_000)

    g =
      Enum.reduce(others, g, fn p, g ->
        {g, _} = Gossip.beat(g, {:cs_hb, p, 1_000, 1_000, peer_view, [], {0, 0}}, interval)
        g
      end)

    {g, _} = Gossip.tick(g, view, interval)
    detectors = detectors(others, interval)

    measure = fn g, base, change?, detectors? ->
      Enum.reduce(1..intervals, {g, []}, fn j, {g, times} ->
        i = base + j
        now = (i + 1) * interval
        version = 1_000 + i
        digest = g.digest
        changed = Enum.at(others, rem(i, length(others)))

        incoming =
          for p <- others do
            {cv, v} =
              if change? and p == changed,
                do: {version, Map.put(peer_view, :"x#{i}@h", :reachable)},
                else: {g.views[p].cv, nil}

            :erlang.term_to_binary({:cs_hb, p, version, cv, v, [], digest})
          end

        {us, g} =
          :timer.tc(fn ->
            {g, beat} = Gossip.tick(g, view, now)
            for _ <- others, do: :erlang.term_to_binary(beat)

            if detectors? do
              ClusterScope.Native.phi_all(detectors, now * 1.0)
            end

            Enum.reduce(incoming, g, fn bin, g ->
              {:cs_hb, from, _, _, _, _, _} = msg = :erlang.binary_to_term(bin)

              if detectors?,
                do: ClusterScope.Native.phi_heartbeat(detectors, Atom.to_string(from), now * 1.0)

              {g, _out} = Gossip.beat(g, msg, now)
              g
            end)
          end)

        {g, [us | times]}
      end)
    end

    {g, steady} = measure.(g, 0, false, false)
    {g, change} = measure.(g, intervals, true, false)
    {g, with_detectors} = measure.(g, 2 * intervals, false, true)
    {_g, beat} = Gossip.tick(g, view, (3 * intervals + 2) * interval)
    bytes = byte_size(:erlang.term_to_binary(beat))

    %{
      steady_ms: HeartbeatScale.median(steady) / 1_000,
      change_ms: HeartbeatScale.median(change) / 1_000,
      detectors_ms: HeartbeatScale.median(with_detectors) / 1_000,
      beat_bytes: bytes,
      path: "gossip"
    }
  end

  defp detectors(peers, now) do
    {:ok, d} = ClusterScope.Native.phi_new(200, 50.0, 200.0, 200.0, 10_000)
    for p <- peers, do: ClusterScope.Native.phi_heartbeat(d, Atom.to_string(p), now * 1.0)
    d
  end

  # The path before the change: every beat carries up to 64 views of n - 1
  # entries; the receiver merges each by version.
  defp run_legacy(n, intervals, interval) do
    [me | others] = names(n)
    view = Map.new(others, &{&1, :reachable})
    views = Map.new(Enum.take(names(n), 64), &{&1, {1, view}})

    merge = fn known, gossip, now ->
      Enum.reduce(gossip, known, fn {node, {version, v}}, acc ->
        case Map.fetch(acc, node) do
          {:ok, %{version: k}} when k >= version -> acc
          _ -> Map.put(acc, node, %{version: version, at_ms: now, view: v})
        end
      end)
    end

    times =
      for i <- 1..intervals do
        now = i * interval
        gossip = Map.new(views, fn {node, {_, v}} -> {node, {i, v}} end)
        incoming = for p <- others, do: :erlang.term_to_binary({:cs_heartbeat, p, i, gossip})

        {us, _} =
          :timer.tc(fn ->
            beat = {:cs_heartbeat, me, i, gossip}
            for _ <- others, do: :erlang.term_to_binary(beat)

            Enum.reduce(incoming, %{}, fn bin, known ->
              {:cs_heartbeat, _, _, g} = :erlang.binary_to_term(bin)
              merge.(known, g, now)
            end)
          end)

        us
      end

    bytes = byte_size(:erlang.term_to_binary({:cs_heartbeat, me, 1, views}))
    ms = HeartbeatScale.median(times) / 1_000
    %{steady_ms: ms, change_ms: ms, detectors_ms: nil, beat_bytes: bytes, path: "legacy"}
  end
end

epmd = LocalCluster.ensure_epmd()
IO.puts("epmd: #{inspect(epmd)}")
{:ok, _} = LocalCluster.ensure_distributed()

real =
  for n <- sizes do
    IO.puts("#{n} peers: starting")
    peers = HeartbeatScale.start(n)

    for p <- peers do
      {:module, ^probe} =
        LocalCluster.call(p, :code, :load_binary, [probe, ~c"nofile", probe_bin])
    end

    Process.sleep(3_000)

    IO.puts(
      "#{n} peers: healthy; #{rounds} round(s) of #{window_s} s running / #{window_s} s suspended"
    )

    result = HeartbeatScale.measure(peers, probe, rounds, window_s)

    result =
      if System.get_env("MSACC") == "0",
        do: result,
        else: Map.put(result, :diag, HeartbeatScale.diagnose(peers, probe, window_s))

    Cluster.cleanup(peers)
    Map.put(result, :nodes, n)
  end

IO.puts("simulated: one node among #{Enum.join(sim_sizes, ", ")}")

sim =
  for n <- sim_sizes do
    r = HeartbeatScale.Sim.run(n, if(n >= 1_000, do: 15, else: 40), interval)
    IO.puts("  #{n}: #{inspect(r)}")
    Map.put(r, :nodes, n)
  end

IO.puts("")
IO.puts("nodes  cpu_%_per_node (raw running)  sent_B/s/node  B/msg  reductions/s")

for r <- real do
  IO.puts(
    "#{String.pad_leading(to_string(r.nodes), 5)}  #{String.pad_leading(HeartbeatScale.f(r.cpu, 3), 14)} " <>
      "(#{HeartbeatScale.f(r.running_cpu, 3)})  #{String.pad_leading(to_string(round(r.bytes_s)), 13)}  " <>
      "#{String.pad_leading(HeartbeatScale.f(r.bytes_msg, 1), 5)}  #{round(r.reds_s)}"
  )
end

diag_keys = fn
  %{diag: d} ->
    states =
      for st <- [:emulator, :port, :check_io, :other, :gc, :aux],
          do: " msacc_#{st}_pct=#{HeartbeatScale.f(Map.get(d.by_state, st, 0.0), 3)}"

    " process_cpu_pct_per_node=#{HeartbeatScale.f(d.traced.processes + d.traced.ports, 3)}" <>
      " process_cpu_split=processes:#{HeartbeatScale.f(d.traced.processes, 3)},dist_ports:#{HeartbeatScale.f(d.traced.ports, 3)}" <>
      Enum.join(states) <>
      " os_wakeups_per_s_per_node=#{round(d.os_wakeups)} process_switches_per_s_per_node=#{round(d.switches)}" <>
      " heartbeat_runs_per_s=#{HeartbeatScale.f(Map.get(d.counts, ClusterScope.Cluster.Heartbeat, 0), 1)}" <>
      " state_runs_per_s=#{HeartbeatScale.f(Map.get(d.counts, ClusterScope.Cluster.State, 0), 1)}"

  _ ->
    ""
end

for r <- real do
  IO.puts(
    "RESULT bench=heartbeat_scale nodes=#{r.nodes}#{if HeartbeatScale.sbwt_args() != [], do: " sbwt=none"}#{if ms = System.get_env("INTERVAL_MS"), do: " interval_ms=#{ms}"} cpu_pct_per_node=#{HeartbeatScale.f(r.cpu, 3)} " <>
      "sent_bytes_per_s_per_node=#{round(r.bytes_s)} bytes_per_msg=#{HeartbeatScale.f(r.bytes_msg, 1)} " <>
      "running_cpu_pct_per_node=#{HeartbeatScale.f(r.running_cpu, 3)} reductions_per_s_per_node=#{round(r.reds_s)}" <>
      diag_keys.(r)
  )
end

case {Enum.find(real, &(&1.nodes == 4)), Enum.max_by(real, & &1.nodes)} do
  {%{} = small, %{} = big} when big.nodes > small.nodes ->
    IO.puts(
      "RESULT bench=heartbeat_scale bytes_per_msg_ratio=#{HeartbeatScale.f(big.bytes_msg / small.bytes_msg, 2)} " <>
        "nodes=#{big.nodes} vs_nodes=#{small.nodes}"
    )

  _ ->
    :ok
end

for r <- sim do
  detectors =
    if r.detectors_ms, do: " with_detectors_ms=#{HeartbeatScale.f(r.detectors_ms, 3)}", else: ""

  IO.puts(
    "RESULT bench=heartbeat_scale simulated_nodes=#{r.nodes} path=#{r.path} gossip_ms_per_interval=#{HeartbeatScale.f(r.steady_ms, 3)} " <>
      "with_one_change_ms=#{HeartbeatScale.f(r.change_ms, 3)}#{detectors} beat_bytes=#{r.beat_bytes}"
  )
end
