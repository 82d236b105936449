# A frozen Horde member and the Horde calls of the healthy nodes: how long
# Horde.Cluster.members/1 takes on healthy nodes while something scans the
# supervisor with one member frozen (SIGSTOP), ClusterScope's scans (the
# health collector and horde_supervisor_inspect, back to back) against the
# scan a user would write by hand (Horde.DynamicSupervisor.which_children/1,
# what ClusterScope's collector did before issue 12), interleaved rounds.
#
#   ERL_LIBS=/tmp/3p/lib MIX_ENV=test mix run bench/horde_frozen_member.exs
#   QUICK=1 ERL_LIBS=/tmp/3p/lib MIX_ENV=test mix run bench/horde_frozen_member.exs
#
# Needs Horde 0.10 on the code path (ERL_LIBS) and SIGSTOP. The nodes keep
# OTP's default net tick time (60 s), as in production: a frozen member
# stays connected for the whole round.
#
# RESULT: `ratio` = the unsafe scan's worst members/1 latency over
# ClusterScope's (above 1: ClusterScope harms Horde less).

alias ClusterScope.LocalCluster
alias ClusterScope.Test.{Cluster, HordeNode}

quick = System.get_env("QUICK") == "1"
rounds = if quick, do: 2, else: 5
window_ms = 3_000

unless Code.ensure_loaded?(Horde.Registry) do
  IO.puts(:stderr, "Horde is not loadable: run with ERL_LIBS pointing at Horde 0.10 and its deps")
  System.halt(1)
end

{:ok, _} = LocalCluster.ensure_distributed(name: "cluster_scope_bench_horde", net_ticktime: 60)

{:ok, peers} =
  LocalCluster.start_peers(3,
    aliases: true,
    alias_base: Cluster.alias_base(),
    connection: :standard_io,
    link: false,
    connect: false,
    args: ["-kernel", "logger_level", "error"]
  )

:ok = LocalCluster.connect_mesh(peers, :hidden)
[p1, p2, p3] = peers

try do
  for p <- peers, do: :ok = LocalCluster.call(p, HordeNode, :start, [], 15_000)

  Cluster.poll(System.monotonic_time(:millisecond) + 20_000, fn ->
    Enum.all?(peers, fn p ->
      length(LocalCluster.call(p, Horde.Cluster, :members, [HordeNode.supervisor()])) == 3
    end)
  end) || raise "Horde did not form"

  LocalCluster.call(p1, HordeNode, :start_workers, ["bench", 30], 20_000)
  Process.sleep(1_000)

  percentile = fn list, q ->
    sorted = Enum.sort(list)
    Enum.at(sorted, min(length(sorted) - 1, trunc(q * length(sorted))))
  end

  measure = fn mode ->
    :ok = Cluster.freeze(p3)

    try do
      case mode do
        :clusterscope ->
          for p <- [p1, p2],
              do:
                :ok =
                  LocalCluster.call(p, HordeNode, :spawn_clusterscope_scans, [window_ms + 500])

        :unsafe ->
          :ok = LocalCluster.call(p1, HordeNode, :spawn_unsafe_scan, [])
      end

      Process.sleep(50)

      tasks =
        for p <- [p1, p2] do
          Task.async(fn ->
            LocalCluster.call(p, HordeNode, :members_latencies, [window_ms], window_ms + 15_000)
          end)
        end

      Enum.flat_map(tasks, &Task.await(&1, window_ms + 20_000))
    after
      Cluster.resume(p3)
      # Let the blocked which_children (unsafe) finish and Horde settle.
      Process.sleep(1_500)
    end
  end

  results =
    for round <- 1..rounds, mode <- [:clusterscope, :unsafe], reduce: %{} do
      acc ->
        lat = measure.(mode)
        max_ms = Enum.max(lat) / 1000

        IO.puts(
          "round #{round} #{mode}: #{length(lat)} members/1 calls, " <>
            "p50 #{Float.round(percentile.(lat, 0.5) / 1000, 2)} ms, max #{Float.round(max_ms, 1)} ms"
        )

        Map.update(acc, mode, [lat], &[lat | &1])
    end

  stats = fn mode ->
    all = results[mode] |> List.flatten()
    maxes = Enum.map(results[mode], &(Enum.max(&1) / 1000))

    %{
      calls: length(all),
      p50: percentile.(all, 0.5) / 1000,
      p99: percentile.(all, 0.99) / 1000,
      max: Enum.max(maxes),
      spread: Enum.max(maxes) - Enum.min(maxes)
    }
  end

  cs = stats.(:clusterscope)
  unsafe = stats.(:unsafe)
  ratio = unsafe.max / max(cs.max, 0.001)

  IO.puts(
    "\nHorde.Cluster.members/1 on healthy nodes, one member frozen, #{rounds} rounds of #{window_ms} ms:\n" <>
      "  while ClusterScope scans:     #{cs.calls} calls, p50 #{Float.round(cs.p50, 2)} ms, p99 #{Float.round(cs.p99, 2)} ms, max #{Float.round(cs.max, 1)} ms\n" <>
      "  while which_children scans:   #{unsafe.calls} calls, p50 #{Float.round(unsafe.p50, 2)} ms, p99 #{Float.round(unsafe.p99, 2)} ms, max #{Float.round(unsafe.max, 1)} ms"
  )

  IO.puts(
    "RESULT bench=horde_frozen_member clusterscope_members_max_ms=#{Float.round(cs.max, 2)} " <>
      "clusterscope_members_p99_ms=#{Float.round(cs.p99, 2)} clusterscope_calls=#{cs.calls} " <>
      "unsafe_members_max_ms=#{Float.round(unsafe.max, 1)} unsafe_members_p50_ms=#{Float.round(unsafe.p50, 1)} " <>
      "unsafe_calls=#{unsafe.calls} ratio=#{Float.round(ratio, 1)} " <>
      "spread_ms=#{Float.round(cs.spread, 2)} rounds=#{rounds} quick=#{quick}"
  )
after
  for p <- peers do
    Cluster.resume(p)
    System.cmd("kill", ["-KILL", "#{p.os_pid}"], stderr_to_stdout: true)
  end
end
