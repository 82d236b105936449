# The ETS and port views end to end against what Observer does (principle
# 7): Observer's table view asks each node `observer_backend:get_table_list/2`
# (every table's info) and sorts on the caller; ClusterScope asks each node
# for its best `limit` and merges in the Rust core.
#
#   MIX_ENV=test mix run bench/node_views.exs
#   QUICK=1 ... 4 peers x 2,000 tables (else 4 x 10,000), 3 rounds (else 7).
#
# What is timed is the question a user asks from one node: the top 20
# tables by memory of the whole cluster (`ets_tables` through the runner,
# from the bench node, a hidden observer of the peers) against Observer's per-node call made to every node at once
# with `:erpc.multicall` from the same node, then sorted there. Rounds are
# interleaved (Observer first in odd rounds); each side's median and spread
# ((max - min) / median) are reported. The answers are checked to be the
# same tables (memory values in rank order) in each round:
# `same_answer_rounds` counts the rounds where they were; a module loaded
# on a node between the two calls grows its `code` table, which ranks
# first, so a round can differ without either answer being wrong (DEBUG=1
# prints the difference). The ports view is timed alone (Observer has no cluster view
# of ports): `cluster_ports` top 20 by input.

alias ClusterScope.LocalCluster
alias ClusterScope.Test.{Cluster, NodeViewsHolder}

quick = System.get_env("QUICK") == "1"
rounds = if quick, do: 3, else: 7
per_node = if quick, do: 2_000, else: 10_000
count = 4

defmodule Bench.NV do
  def median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  def spread(list) do
    m = median(list)
    if m == 0, do: 0.0, else: Float.round((Enum.max(list) - Enum.min(list)) / m, 2)
  end

  def ms(us), do: Float.round(us / 1000, 1)

  # What Observer does, for every node, then the top 20 on the caller.
  def observer(nodes) do
    # Every table, as ClusterScope lists them (system and private ones too).
    opts = [{:sys_hidden, false}, {:unread_hidden, false}]

    nodes
    |> :erpc.multicall(:observer_backend, :get_table_list, [:ets, opts], 60_000)
    |> Enum.zip(nodes)
    |> Enum.flat_map(fn {{:ok, tabs}, node} -> Enum.map(tabs, &{node, &1}) end)
    |> Enum.sort_by(fn {_node, t} -> -Keyword.fetch!(t, :memory) end)
    |> Enum.take(20)
    # observer_backend reports memory in bytes already.
    |> Enum.map(fn {node, t} -> {node, Keyword.fetch!(t, :memory)} end)
  end
end

{:ok, peers} =
  LocalCluster.start_peers(count,
    aliases: true,
    alias_base: Cluster.alias_base(),
    connection: :standard_io,
    link: false,
    connect: false,
    args: ["-kernel", "logger_level", "error"]
  )

try do
  :ok = LocalCluster.connect_mesh(peers, :hidden)
  [first | _] = peers
  nodes = Enum.map(peers, & &1.node)

  Cluster.poll(System.monotonic_time(:millisecond) + 20_000, fn ->
    agents = LocalCluster.call(first, ClusterScope.Cluster.Heartbeat, :agent_nodes, [])
    Enum.all?(nodes, &(&1 in agents))
  end) || raise "peers did not see each other"

  for p <- peers do
    pid = LocalCluster.call(p, NodeViewsHolder, :tables, [per_node, 5], 120_000)
    true = is_pid(pid)
  end

  # Both sides ask from this node (a hidden observer, so `nodes` is given).
  node_list = Enum.map(nodes, &Atom.to_string/1)

  run = fn op, params ->
    :timer.tc(fn ->
      {:ok, answer} = ClusterScope.run(op, Map.put(params, "nodes", node_list))
      answer
    end)
  end

  observer = fn -> :timer.tc(fn -> Bench.NV.observer(nodes) end) end

  # Warm-up: each side's modules get loaded on every node (a module load
  # grows the `code` table, which ranks first).
  _ = observer.()
  _ = run.("ets_tables", %{"limit" => 20})
  _ = run.("cluster_ports", %{"limit" => 20})

  IO.puts("load average before: #{File.read!("/proc/loadavg") |> String.trim()}")

  results =
    for round <- 1..rounds do
      ours = fn -> run.("ets_tables", %{"limit" => 20}) end

      {{cs_us, answer}, {obs_us, obs}} =
        if rem(round, 2) == 1 do
          o = observer.()
          {ours.(), o}
        else
          c = ours.()
          {c, observer.()}
        end

      # Many tables tie on memory: compare the values ranked.
      same =
        Enum.map(answer.tables, & &1.memory_bytes) ==
          Enum.map(obs, fn {_n, bytes} -> bytes end)

      if not same and System.get_env("DEBUG") do
        ours = Enum.map(answer.tables, &{&1.node, &1.memory_bytes})
        IO.inspect({ours -- obs, obs -- ours}, label: "differ")
      end

      {ports_us, _} = run.("cluster_ports", %{"limit" => 20, "sort_by" => "input"})
      {cs_us, obs_us, ports_us, same}
    end

  cs = Enum.map(results, &elem(&1, 0))
  obs = Enum.map(results, &elem(&1, 1))
  ports = Enum.map(results, &elem(&1, 2))
  same = Enum.count(results, &elem(&1, 3))

  IO.puts(
    "RESULT bench=node_views nodes=#{count} tables_per_node=#{per_node} " <>
      "ets_top_ms=#{Bench.NV.ms(Bench.NV.median(cs))} ets_spread=#{Bench.NV.spread(cs)} " <>
      "observer_ms=#{Bench.NV.ms(Bench.NV.median(obs))} observer_spread=#{Bench.NV.spread(obs)} " <>
      "ratio=#{Float.round(Bench.NV.median(obs) / max(Bench.NV.median(cs), 1), 2)} " <>
      "ports_top_ms=#{Bench.NV.ms(Bench.NV.median(ports))} same_answer_rounds=#{same}/#{rounds}"
  )
after
  Enum.each(peers, &LocalCluster.stop/1)
end
