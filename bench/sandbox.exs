# Sandboxes on real nodes: create and destroy a sandbox of 1,000 processes
# over 3 peers, next to the same by hand (a DynamicSupervisor per node
# started over :erpc, what a user scripts without ClusterScope), in
# interleaved rounds; then the failover: the time from a peer's SIGKILL to
# every one of its processes running again on the survivors (no tool does
# this; the by-hand script leaves them dead).
#
#   MIX_ENV=test mix run bench/sandbox.exs          # 10 rounds, 20 failovers
#   QUICK=1 MIX_ENV=test mix run bench/sandbox.exs  # 3 rounds, 5 failovers (< 2 min)
#
# Peers run with a 3 s net tick time (the harness's); a SIGKILL closes the
# connection, so nodedown arrives at once and the tick plays no part. The
# failover is polled every 5 ms from this node (each poll asks both
# survivors for their parts over the peers' standard I/O, a few ms).

alias ClusterScope.LocalCluster
alias ClusterScope.Sandbox.Agent, as: SAgent
alias ClusterScope.Test.{Cluster, SandboxBench}

quick = System.get_env("QUICK") == "1"
rounds = if quick, do: 3, else: 10
failovers = if quick, do: 5, else: 20
procs = 1_000

defmodule Bench do
  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.Cluster

  def start(count) do
    {:ok, peers} =
      LocalCluster.start_peers(count,
        aliases: true,
        alias_base: Cluster.alias_base(),
        connection: :standard_io,
        link: false,
        connect: false,
        args: ["-kernel", "logger_level", "error"]
      )

    :ok = LocalCluster.connect_mesh(peers, :hidden)

    for p <- peers do
      :ok =
        LocalCluster.call(p, Application, :put_env, [
          :cluster_scope,
          :startable_modules,
          [ClusterScope.Test.SandboxWorker]
        ])

      LocalCluster.call(p, ClusterScope.Config, :load, [])
    end

    # Every peer sees the others as agents before a create lists them.
    nodes = Enum.map(peers, & &1.node)

    Cluster.poll(now() + 20_000, fn ->
      Enum.all?(peers, fn p ->
        agents = LocalCluster.call(p, ClusterScope.Cluster.Heartbeat, :agent_nodes, [])
        Enum.all?(nodes, &(&1 in agents))
      end)
    end) || raise "peers did not see each other"

    peers
  end

  def stop(peers), do: Cluster.cleanup(peers)
  def now, do: System.monotonic_time(:millisecond)

  def pct(list, p) do
    sorted = Enum.sort(list)
    Enum.at(sorted, min(length(sorted) - 1, round(p * (length(sorted) - 1))))
  end

  def median(list), do: pct(list, 0.5)

  # Polls every 5 ms (the harness's poll sleeps 50 ms: too coarse here).
  def poll(deadline, fun) do
    cond do
      fun.() -> true
      now() >= deadline -> false
      true -> Process.sleep(5) && poll(deadline, fun)
    end
  end
end

params = fn name ->
  %{
    "name" => name,
    "strategy" => "spread",
    "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => procs}]
  }
end

peers = Bench.start(3)
[a | _] = peers
nodes = Enum.map(peers, & &1.node)

IO.puts("create/destroy #{procs} processes over 3 peers, #{rounds} interleaved rounds")

rows =
  for i <- 1..rounds do
    # Alternate which goes first.
    order = if rem(i, 2) == 0, do: [:ours, :by_hand], else: [:by_hand, :ours]

    Enum.reduce(order, %{}, fn
      :ours, acc ->
        {c_ms, {:ok, s}} =
          LocalCluster.call(
            a,
            SandboxBench,
            :timed_run,
            ["create_sandbox", params.("b#{i}")],
            120_000
          )

        true = Enum.sum(Map.values(s.nodes)) == procs

        {d_ms, {:ok, d}} =
          LocalCluster.call(
            a,
            SandboxBench,
            :timed_run,
            ["destroy_sandbox", %{"id" => s.id}],
            120_000
          )

        true = d.stopped == procs
        Map.merge(acc, %{create: c_ms, destroy: d_ms})

      :by_hand, acc ->
        {hc, sups} = LocalCluster.call(a, SandboxBench, :by_hand_create, [nodes, procs], 120_000)
        hd_ms = LocalCluster.call(a, SandboxBench, :by_hand_destroy, [sups], 120_000)
        Map.merge(acc, %{hand_create: hc, hand_destroy: hd_ms})
    end)
    |> tap(fn r ->
      IO.puts(
        "  round #{i}: create #{r.create} ms (by hand #{r.hand_create}), " <>
          "destroy #{r.destroy} ms (by hand #{r.hand_destroy})"
      )
    end)
  end

Bench.stop(peers)

create_ms = Bench.median(Enum.map(rows, & &1.create))
destroy_ms = Bench.median(Enum.map(rows, & &1.destroy))
hand_create = Bench.median(Enum.map(rows, & &1.hand_create))
hand_destroy = Bench.median(Enum.map(rows, & &1.hand_destroy))
ratios = Enum.map(rows, &(&1.create / max(&1.hand_create, 1)))

IO.puts(
  "create: median #{create_ms} ms, by hand #{hand_create} ms; ratio median " <>
    "#{Float.round(Bench.median(ratios), 2)} (spread #{Float.round(Enum.min(ratios), 2)}..#{Float.round(Enum.max(ratios), 2)})"
)

IO.puts(
  "failover: #{failovers} trials, #{procs} processes over 3 fresh peers each, one SIGKILLed"
)

times =
  for t <- 1..failovers do
    peers = Bench.start(3)
    [a, b, c] = Enum.sort_by(peers, & &1.node)
    victim = Enum.at([a, b, c], rem(t, 3))
    survivors = [a, b, c] -- [victim]

    {_, {:ok, s}} =
      LocalCluster.call(
        a,
        SandboxBench,
        :timed_run,
        ["create_sandbox", params.("f#{t}")],
        120_000
      )

    t0 = Bench.now()
    Cluster.kill(victim)

    ok =
      Bench.poll(t0 + 30_000, fn ->
        running =
          Enum.map(survivors, fn p ->
            case LocalCluster.call(p, SAgent, :list, [], 10_000) do
              {:ok, parts} -> Enum.sum(for x <- parts, x.id == s.id, do: x.running)
              _ -> 0
            end
          end)

        Enum.sum(running) == procs
      end)

    ms = Bench.now() - t0
    Bench.stop(peers)
    if ok, do: IO.puts("  trial #{t}: #{ms} ms"), else: IO.puts("  trial #{t}: not back in 30 s")
    if ok, do: ms, else: 30_000
  end

p50 = Bench.pct(times, 0.5)
p99 = Bench.pct(times, 0.99)

IO.puts(
  "failover p99 #{p99} ms (target <= 3000 ms): #{if p99 <= 3_000, do: "met", else: "NOT met"}"
)

IO.puts(
  "RESULT bench=sandbox_by_hand procs=#{procs} nodes=3 create_ms=#{hand_create} destroy_ms=#{hand_destroy}"
)

IO.puts(
  "RESULT bench=sandbox procs=#{procs} nodes=3 create_ms=#{create_ms} destroy_ms=#{destroy_ms} " <>
    "failover_p50_ms=#{p50} failover_p99_ms=#{p99}"
)
