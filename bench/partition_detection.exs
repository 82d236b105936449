# Partition detection on real nodes: how fast ClusterScope classifies each
# fault, next to how fast Erlang's own nodedown arrives for the same trial.
#
#   MIX_ENV=test mix run bench/partition_detection.exs          # 20 trials each
#   QUICK=1 MIX_ENV=test mix run bench/partition_detection.exs  # 3 trials, short soak
#   SCENARIOS=indirect,split_3_2 TRIALS=10 ...                 # a subset (no soak)
#   INTERVAL_MS=300 ...                                         # another heartbeat interval
#
# Needs root and iptables (faults are real: iptables DROP on loopback
# aliases, SIGSTOP). Every node of the bench cluster runs with a net tick
# time of 3 s so that Erlang's nodedown arrives within seconds; with OTP's
# default of 60 s it would take 45-75 s.

alias ClusterScope.LocalCluster
alias ClusterScope.Test.{Cluster, NodeWatcher}

quick = System.get_env("QUICK") == "1"
trials = String.to_integer(System.get_env("TRIALS") || if(quick, do: "3", else: "20"))
soak_ms = if quick, do: 20_000, else: 120_000
ticktime = 3

# A subset of the scenarios, for diagnosis: the soak and the overhead run
# only with all of them.
only =
  case System.get_env("SCENARIOS") do
    nil -> nil
    list -> String.split(list, ",", trim: true)
  end

wanted? = fn name -> only == nil or Atom.to_string(name) in only end

defmodule Bench do
  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.{Cluster, NodeWatcher}

  def start(count) do
    {:ok, peers} =
      LocalCluster.start_peers(count,
        aliases: true,
        alias_base: Cluster.alias_base(),
        connection: :standard_io,
        link: false,
        connect: false,
        args: ["-kernel", "logger_level", "error"] ++ Cluster.interval_args()
      )

    for p <- peers do
      {:ok, _} = LocalCluster.call(p, NodeWatcher, :start, [])
      {:ok, _} = LocalCluster.call(p, NodeWatcher, :start_cluster_recorder, [])
    end

    :ok = LocalCluster.connect_mesh(peers, :hidden)
    await_healthy(peers)
    peers
  end

  def await_healthy(peers, timeout \\ 20_000) do
    Cluster.poll(now() + timeout, fn -> healthy?(peers) end) ||
      raise "cluster did not become healthy"
  end

  def restore(peers) do
    Cluster.heal_all()
    for p <- peers, do: Cluster.resume(p)
    nodes = Enum.map(peers, & &1.node)

    # Reconnect whatever Erlang or global disconnected, until the mesh holds
    # and every node classifies it healthy (global may drop links again while
    # they come back).
    ok =
      Cluster.poll(now() + 60_000, fn ->
        LocalCluster.connect_mesh(peers, :hidden)

        meshed =
          Enum.all?(peers, fn p ->
            connected = LocalCluster.call(p, Node, :list, [])
            Enum.all?(nodes -- [p.node], &(&1 in connected))
          end)

        # A trial starts from a cluster that stays healthy for a second:
        # global may still be settling the links that came back.
        meshed and healthy?(peers) and Process.sleep(1_000) == :ok and healthy?(peers)
      end)

    ok || raise "cluster did not recover"
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
    LocalCluster.call(peer, ClusterScope, :run, [op, %{}], 2_000)
  catch
    _, _ -> :error
  end

  def now, do: System.monotonic_time(:millisecond)
  def wall, do: System.system_time(:millisecond)

  # The first event on `observer` after `since_id` satisfying `fun`, waiting
  # up to `timeout` ms.
  def first_event(observer, since_id, fun, timeout) do
    Cluster.poll(now() + timeout, fn ->
      observer
      |> LocalCluster.call(NodeWatcher, :cluster_events, [])
      |> Enum.find(&(&1.id > since_id and fun.(&1)))
    end)
  end

  def last_id(peer) do
    case LocalCluster.call(peer, NodeWatcher, :cluster_events, []) do
      [] -> 0
      events -> List.last(events).id
    end
  end

  def erlang_down(observer, about, since_wall, timeout) do
    about = Enum.map(List.wrap(about), & &1.node)

    Cluster.poll(now() + timeout, fn ->
      observer
      |> LocalCluster.call(NodeWatcher, :events, [])
      |> Enum.find(fn {e, n, _, at} -> e == :nodedown and n in about and at >= since_wall end)
    end)
  end

  def percentile([], _), do: nil

  def percentile(values, p) do
    sorted = Enum.sort(values)
    Enum.at(sorted, min(length(sorted) - 1, ceil(p / 100 * length(sorted)) - 1))
  end

  def fmt(nil), do: "na"
  def fmt(v), do: to_string(v)

  def run_scenario(
        peers,
        {name, inject, observer, expected, {erl_observer, erl_about}},
        trials,
        ticktime
      ) do
    runs =
      for trial <- 1..trials do
        since = last_id(observer)
        t0 = wall()
        inject.()

        event =
          first_event(
            observer,
            since,
            &(&1.type == :partition and &1.details.status == expected),
            10_000
          )

        detected_ms = if event, do: event.at_ms - t0
        erlang = erlang_down(erl_observer, erl_about, t0, ticktime * 1_000 * 3)
        erlang_ms = with {_, _, _, at} <- erlang, do: at - t0

        # A split must still read as a split once Erlang has given up on
        # the other side (a second after its nodedown).
        held =
          if expected == :split and erlang != nil do
            Process.sleep(1_000)

            match?(
              {:ok, %{classification: %{status: :split}}},
              safe_run(observer, "partition_status")
            )
          end

        seen =
          observer
          |> LocalCluster.call(NodeWatcher, :cluster_events, [])
          |> Enum.filter(&(&1.id > since and &1.type in [:partition, :down]))
          |> Enum.map(fn
            %{type: :down} = e -> "down(#{e.node}, #{e.details.reason})@#{e.at_ms - t0}"
            e -> "#{e.details.status}@#{e.at_ms - t0}"
          end)

        IO.puts(
          "  #{name} trial #{trial}: detected #{fmt(detected_ms)} ms, erlang nodedown #{fmt(erlang_ms)} ms" <>
            if(held == false, do: ", not a split after the nodedown", else: "") <>
            if(detected_ms == nil or detected_ms > 1_000 or held == false,
              do: " (seen: #{Enum.join(seen, ", ")})",
              else: ""
            )
        )

        restore(peers)
        %{detected_ms: detected_ms, erlang_ms: erlang_ms, held: held}
      end

    detected = for %{detected_ms: v} <- runs, v != nil, do: v
    erlang = for %{erlang_ms: v} <- runs, v != nil, do: v

    %{
      scenario: name,
      trials: trials,
      p50: percentile(detected, 50),
      p99: percentile(detected, 99),
      erlang_p50: percentile(erlang, 50),
      misclassified: Enum.count(runs, &is_nil(&1.detected_ms)),
      held:
        if(expected == :split,
          do: "#{Enum.count(runs, &(&1.held == true))}/#{trials}",
          else: nil
        )
    }
  end
end

# Distribution starts after the module above is compiled: the compiler's
# processes must not straddle the node's change of name.
{:ok, _} = LocalCluster.ensure_distributed(name: "cluster_scope_bench", net_ticktime: ticktime)
:ok = Cluster.chaos_available?()

IO.puts("net_ticktime #{ticktime} s, #{trials} trials per scenario")

# A clean 2-2 split needs an even cluster: four nodes of their own.
split_2_2 =
  if wanted?.(:split_2_2) do
    [a, b, c, d] = peers4 = Bench.start(4)

    result =
      Bench.run_scenario(
        peers4,
        {:split_2_2, fn -> Cluster.cut_all(for x <- [a, b], y <- [c, d], do: {x, y}) end, a,
         :split, {a, c}},
        trials,
        ticktime
      )

    Cluster.cleanup(peers4)
    result
  end

peers = Bench.start(5)
[a, b, c, d, e] = peers

scenarios = [
  {:full_cut, fn -> Cluster.cut_all(for p <- [a, b, c, d], do: {p, e}) end, a, :split, {a, e}},
  {:frozen, fn -> Cluster.freeze(e) end, a, :frozen, {a, e}},
  {:one_way, fn -> Cluster.cut(a, b, :one_way) end, c, :one_way, {a, b}},
  {:indirect, fn -> Cluster.cut(a, b) end, c, :indirect, {a, b}},
  {:split_3_2, fn -> Cluster.cut_all(for x <- [a, b, c], y <- [d, e], do: {x, y}) end, a, :split,
   {a, d}}
]

results =
  Map.new(scenarios, fn {name, _, _, _, _} = scenario ->
    {name, if(wanted?.(name), do: Bench.run_scenario(peers, scenario, trials, ticktime))}
  end)

results =
  Enum.reject(
    [
      results.full_cut,
      results.frozen,
      results.one_way,
      results.indirect,
      split_2_2,
      results.split_3_2
    ],
    &is_nil/1
  )

# Heal: cut e off, wait for the split, remove the rules, and time the heal
# event (reconnecting, as libcluster would, links Erlang dropped meanwhile).
results =
  if wanted?.(:heal) do
    heal_runs =
      for trial <- 1..trials do
        since = Bench.last_id(a)
        Cluster.cut_all(for p <- [a, b, c, d], do: {p, e})

        split =
          Bench.first_event(
            a,
            since,
            &(&1.type == :partition and &1.details.status == :split),
            10_000
          )

        since = Bench.last_id(a)
        t0 = Bench.wall()
        Cluster.heal_all()
        # Reconnect what Erlang may have dropped meanwhile, as libcluster would;
        # a link still up resumes at the next TCP retransmission.
        reconnect = Task.async(fn -> LocalCluster.connect_mesh(peers, :hidden) end)
        heal = split && Bench.first_event(a, since, &(&1.type == :heal), 10_000)
        Task.await(reconnect, 30_000)
        ms = if heal, do: heal.at_ms - t0
        IO.puts("  heal trial #{trial}: healed after #{Bench.fmt(ms)} ms")
        Bench.restore(peers)
        ms
      end

    healed = Enum.reject(heal_runs, &is_nil/1)

    results ++
      [
        %{
          scenario: :heal,
          trials: trials,
          p50: Bench.percentile(healed, 50),
          p99: Bench.percentile(healed, 99),
          erlang_p50: nil,
          misclassified: Enum.count(heal_runs, &is_nil/1)
        }
      ]
  else
    results
  end

# Loaded soak and heartbeat overhead: only with every scenario.
soak =
  if only == nil do
    # Loaded soak: both cores busy (OS busy loops and a busy process in every
    # peer), no fault: every suspicion or partition is false.
    IO.puts("loaded soak: #{div(soak_ms, 1000)} s with both cores busy")
    marks = Map.new(peers, &{&1.node, Bench.last_id(&1)})
    hogs = for _ <- 1..2, do: Port.open({:spawn, "sh -c 'while :; do :; done'"}, [])

    for p <- peers, do: LocalCluster.call(p, NodeWatcher, :spawn_burner, [soak_ms])

    max_phi =
      Enum.reduce(1..div(soak_ms, 500), 0.0, fn _, acc ->
        Process.sleep(500)

        peers
        |> Enum.flat_map(fn p ->
          case Bench.safe_run(p, "partition_status") do
            {:ok, %{heartbeat: %{peers: phis}}} -> Enum.map(phis, fn {_, v} -> v.phi end)
            _ -> []
          end
        end)
        |> Enum.max(fn -> 0.0 end)
        |> max(acc)
      end)

    for port <- hogs do
      {:os_pid, pid} = Port.info(port, :os_pid)
      System.cmd("kill", ["#{pid}"])
    end

    events =
      Enum.flat_map(peers, fn p ->
        p
        |> LocalCluster.call(NodeWatcher, :cluster_events, [])
        |> Enum.filter(&(&1.id > marks[p.node]))
      end)

    false_suspicions = Enum.count(events, &(&1.type == :suspect))
    false_partitions = Enum.count(events, &(&1.type == :partition))

    # Heartbeat overhead: CPU of one peer's OS process with heartbeats running,
    # minus the same with every Heartbeat process suspended.
    for p <- peers, do: LocalCluster.call(p, :erlang, :garbage_collect, [])
    Process.sleep(2_000)

    cpu_ticks = fn peer ->
      [_, rest] = File.read!("/proc/#{peer.os_pid}/stat") |> String.split(") ", parts: 2)
      fields = String.split(rest, " ")
      String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))
    end

    measure = fn seconds ->
      before = Enum.map(peers, cpu_ticks)
      Process.sleep(seconds * 1_000)
      after_ = Enum.map(peers, cpu_ticks)
      # clock ticks are 1/100 s: percent of one core per node.
      Enum.zip_with(after_, before, &(&1 - &2)) |> Enum.sum() |> Kernel./(length(peers) * seconds)
    end

    window = if quick, do: 10, else: 30
    with_hb = measure.(window)
    for p <- peers, do: LocalCluster.call(p, :sys, :suspend, [ClusterScope.Cluster.Heartbeat])
    without_hb = measure.(window)
    for p <- peers, do: LocalCluster.call(p, :sys, :resume, [ClusterScope.Cluster.Heartbeat])
    overhead = Float.round(max(with_hb - without_hb, 0.0), 3)

    %{
      false_suspicions: false_suspicions,
      false_partitions: false_partitions,
      max_phi: max_phi,
      with_hb: with_hb,
      without_hb: without_hb,
      overhead: overhead
    }
  end

Cluster.cleanup(peers)
Cluster.remove_chain()

IO.puts("")
IO.puts("scenario     trials  p50_ms  p99_ms  erlang_p50_ms  misclassified")

for r <- results do
  IO.puts(
    "#{String.pad_trailing(to_string(r.scenario), 12)} #{String.pad_leading(to_string(r.trials), 6)}  " <>
      "#{String.pad_leading(Bench.fmt(r.p50), 6)}  #{String.pad_leading(Bench.fmt(r.p99), 6)}  " <>
      "#{String.pad_leading(Bench.fmt(r.erlang_p50), 13)}  #{r.misclassified}"
  )
end

if soak do
  IO.puts(
    "loaded soak: #{soak.false_suspicions} false suspicions, #{soak.false_partitions} false partitions, max phi #{Float.round(soak.max_phi, 2)}"
  )

  IO.puts(
    "heartbeat cpu: #{Float.round(soak.with_hb, 3)}% with, #{Float.round(soak.without_hb, 3)}% without (per node, % of one core)"
  )
end

for r <- results do
  IO.puts(
    "RESULT bench=partition_detection scenario=#{r.scenario} trials=#{r.trials} p50_ms=#{Bench.fmt(r.p50)} " <>
      "p99_ms=#{Bench.fmt(r.p99)} erlang_p50_ms=#{Bench.fmt(r.erlang_p50)} misclassified=#{r.misclassified} " <>
      "net_ticktime_s=#{ticktime}" <>
      if(r[:held], do: " split_after_nodedown=#{r.held}", else: "") <>
      if(ms = System.get_env("INTERVAL_MS"), do: " interval_ms=#{ms}", else: "")
  )
end

if soak do
  IO.puts(
    "RESULT bench=partition_detection scenario=loaded_soak duration_s=#{div(soak_ms, 1000)} " <>
      "false_suspicions=#{soak.false_suspicions} false_partitions=#{soak.false_partitions} " <>
      "max_phi=#{Float.round(soak.max_phi, 2)}"
  )

  IO.puts(
    "RESULT bench=partition_detection scenario=heartbeat_overhead nodes=5 cpu_pct_per_node=#{soak.overhead}"
  )
end
