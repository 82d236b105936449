# Code drift across 20 nodes of 10,000 modules each: ClusterScope's digests
# (hashed per node in the Rust core, compared, details only for the buckets
# that differ) against what a user would do instead: `:rpc.multicall` of
# `:code.all_loaded/0` plus each module's MD5, every node's whole list
# shipped to the caller and compared in Elixir (a map module => md5 =>
# nodes).
#
#   MIX_ENV=test mix run bench/code_drift.exs
#   QUICK=1 MIX_ENV=test mix run bench/code_drift.exs      (< 1 minute)
#   ROUNDS=n (default 9, QUICK 5)
#
# The 20 nodes are simulated in this VM (no 20 machines here): each node's
# loaded modules are a list of 10,000 {name, md5} pairs, the same on every
# node except for injected drift (3 modules at another MD5 on node 7, 5
# modules not loaded on node 12). What crosses the network is charged as
# `term_to_binary/1` on the node plus `binary_to_term/1` on the caller,
# for both sides. Both sides run every node's part one after another on
# this one VM, so `total_ms` is the sum over the 20 nodes (on a real
# cluster the node parts run at once, on their own machines: the
# `parallel_ms` figure is the largest node part plus the caller's parts).
# What a node reads from its VM (the MD5s of its loaded modules) is the
# same for both sides and is left out of both totals; it is measured on
# this VM's real modules and printed as `read_us_per_module`.
#
# Rounds are interleaved (baseline first in odd rounds); each side's median
# is reported with its spread ((max - min) / median), and the two answers
# are checked to name the same modules.

defmodule Bench.CodeDrift do
  @moduledoc false

  alias ClusterScope.Native
  alias ClusterScope.NodeViews.CodeDrift

  @nodes 20
  @modules 10_000
  @buckets 256

  def run do
    quick = System.get_env("QUICK") in ["1", "true"]
    rounds = String.to_integer(System.get_env("ROUNDS") || if(quick, do: "5", else: "9"))

    IO.puts(
      "Code drift benchmark (#{if quick, do: "QUICK", else: "full"}): #{@nodes} simulated nodes x " <>
        "#{@modules} modules, #{rounds} interleaved rounds, " <>
        "#{System.schedulers_online()} schedulers, OTP #{System.otp_release()}, " <>
        "core loaded: #{Native.loaded?()}"
    )

    {ours_nodes, base_nodes, expected} = simulate()
    read_us = read_cost()
    IO.puts("  reading MD5s on this VM: #{fmt(read_us)} us per module (the same for both sides)")

    # Warm both paths once.
    _ = ours(ours_nodes)
    _ = baseline(base_nodes)

    runs =
      for round <- 1..rounds do
        order = if rem(round, 2) == 1, do: [:base, :ours], else: [:ours, :base]

        r =
          Map.new(order, fn
            :ours -> {:ours, timed(fn -> ours(ours_nodes) end)}
            :base -> {:base, timed(fn -> baseline(base_nodes) end)}
          end)

        {o_us, o} = r.ours
        {b_us, b} = r.base
        same = o.drifting == expected and b == expected

        IO.puts(
          "  round #{round}: ClusterScope #{fmt(o_us / 1000)} ms " <>
            "(hash #{fmt(o.hash_us / 1000)}, wire #{fmt(o.wire_us / 1000)}, " <>
            "compare #{fmt(o.compare_us / 1000)}, #{o.differing} buckets differ), " <>
            "baseline #{fmt(b_us / 1000)} ms, same answer: #{same}"
        )

        %{o_us: o_us, b_us: b_us, ours: o, same: same}
      end

    o_ms = median(Enum.map(runs, & &1.o_us)) / 1000
    b_ms = median(Enum.map(runs, & &1.b_us)) / 1000
    hash_ms = median(Enum.map(runs, & &1.ours.hash_us)) / @nodes / 1000
    parallel_ms = median(Enum.map(runs, & &1.ours.parallel_us)) / 1000

    IO.puts(
      "  ClusterScope: #{fmt(o_ms)} ms for the cluster (target <= 200 ms: " <>
        "#{if o_ms <= 200, do: "met", else: "NOT met"}); per node hash #{fmt(hash_ms)} ms; " <>
        "with the node parts in parallel #{fmt(parallel_ms)} ms"
    )

    IO.puts("")

    IO.puts(
      "RESULT bench=code_drift nodes=#{@nodes} modules=#{@modules} total_ms=#{fmt(o_ms)} " <>
        "per_node_hash_ms=#{fmt(hash_ms)} parallel_ms=#{fmt(parallel_ms)} " <>
        "baseline_ms=#{fmt(b_ms)} ratio=#{fmt(b_ms / max(o_ms, 0.001))} " <>
        "spread_pct=#{spread(Enum.map(runs, & &1.o_us))} " <>
        "baseline_spread_pct=#{spread(Enum.map(runs, & &1.b_us))} " <>
        "read_us_per_module=#{fmt(read_us)} rounds=#{rounds} " <>
        "same_answer=#{Enum.all?(runs, & &1.same)}"
    )
  end

  # -- simulated nodes ---------------------------------------------------------

  defp simulate do
    :rand.seed(:exsss, {7, 7, 7})

    base =
      for i <- 1..@modules do
        {"Elixir.BenchApp.Domain#{rem(i, 97)}.Module#{i}", :crypto.strong_rand_bytes(16)}
      end

    drifted = base |> Enum.take_random(3) |> Enum.map(&elem(&1, 0)) |> MapSet.new()
    missing = base |> Enum.take_random(5) |> Enum.map(&elem(&1, 0)) |> MapSet.new()

    ours =
      for n <- 1..@nodes do
        for {name, md5} = item <- base, not (n == 12 and MapSet.member?(missing, name)) do
          if n == 7 and MapSet.member?(drifted, name),
            do: {name, :crypto.hash(:md5, md5)},
            else: item
        end
      end

    # The baseline's nodes answer with atoms, as :code.all_loaded/0 gives them.
    base_nodes = for mods <- ours, do: for({name, md5} <- mods, do: {String.to_atom(name), md5})

    {ours, base_nodes, MapSet.union(drifted, missing)}
  end

  defp read_cost do
    n = length(:erlang.loaded())
    reps = 50
    {us, _} = :timer.tc(fn -> for _ <- 1..reps, do: CodeDrift.local_modules() end)
    us / reps / n
  end

  # -- ClusterScope: digests, differing buckets, details, compare ---------------

  defp ours(nodes) do
    # Node side (each node): hash its modules; the digest crosses the wire.
    {hash_us, digests} = timed(fn -> Enum.map(nodes, &ok(Native.drift_digest(&1, @buckets))) end)

    {wire1_us, digests} = timed(fn -> Enum.map(digests, &wire/1) end)

    # Caller: which buckets differ.
    {diff_us, wanted} = timed(fn -> ok(Native.drift_differing(digests)) end)

    # Node side: the modules of those buckets; they cross the wire.
    {select_us, selected} =
      timed(fn -> Enum.map(nodes, &ok(Native.drift_select(&1, @buckets, wanted))) end)

    {wire2_us, selected} = timed(fn -> Enum.map(selected, &wire/1) end)

    # Caller: compare them, in name order.
    {cmp_us, diffs} = timed(fn -> ok(Native.drift_compare(selected)) end)

    names = for {name, _versions, _missing} <- diffs, into: MapSet.new(), do: name

    per_node_us = (hash_us + select_us + wire1_us + wire2_us) / @nodes

    %{
      drifting: names,
      differing: length(wanted),
      hash_us: hash_us,
      wire_us: wire1_us + wire2_us,
      compare_us: diff_us + cmp_us,
      parallel_us: per_node_us + diff_us + cmp_us
    }
  end

  # -- baseline: every node's whole list, compared in Elixir -------------------

  defp baseline(nodes) do
    lists = Enum.map(nodes, &wire/1)
    count = length(lists)

    by_module =
      lists
      |> Enum.with_index()
      |> Enum.reduce(%{}, fn {mods, i}, acc ->
        Enum.reduce(mods, acc, fn {m, md5}, acc ->
          Map.update(acc, m, %{md5 => [i]}, &Map.update(&1, md5, [i], fn ns -> [i | ns] end))
        end)
      end)

    for {m, versions} <- by_module,
        map_size(versions) > 1 or
          versions |> Map.values() |> Enum.map(&length/1) |> Enum.sum() < count,
        into: MapSet.new(),
        do: Atom.to_string(m)
  end

  # -- helpers -----------------------------------------------------------------

  defp wire(term), do: term |> :erlang.term_to_binary() |> :erlang.binary_to_term()

  defp ok({:ok, v}), do: v
  defp ok(other), do: raise("native call failed: #{inspect(other)}")

  defp timed(fun) do
    t0 = System.monotonic_time(:microsecond)
    v = fun.()
    {System.monotonic_time(:microsecond) - t0, v}
  end

  defp median(xs) do
    s = Enum.sort(xs)
    n = length(s)

    if rem(n, 2) == 1,
      do: Enum.at(s, div(n, 2)),
      else: (Enum.at(s, div(n, 2) - 1) + Enum.at(s, div(n, 2))) / 2
  end

  defp spread(xs) do
    m = median(xs)
    if m == 0, do: 0.0, else: Float.round(100 * (Enum.max(xs) - Enum.min(xs)) / m, 1)
  end

  defp fmt(x) when is_integer(x), do: Integer.to_string(x)
  defp fmt(x), do: :erlang.float_to_binary(x * 1.0, decimals: 2)
end

Bench.CodeDrift.run()
