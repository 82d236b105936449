# Histogram benchmark: ClusterScope.Metrics.Histogram (HdrHistogram in the
# Rust core) against a plain-Elixir baseline written below (log-linear
# buckets in :counters).
#
#   MIX_BUILD_ROOT=/tmp/metrics_build mix run bench/histograms.exs
#   QUICK=1 MIX_BUILD_ROOT=/tmp/metrics_build mix run bench/histograms.exs
#
# Prints human-readable lines, then RESULT lines. `ratio` is always "how many
# times better than the baseline": baseline cost / our cost for times, our
# rate / baseline rate for throughputs (above 1: the NIF wins).

defmodule Bench.Baseline do
  @moduledoc false
  # Log-linear buckets like HdrHistogram's at 3 significant figures: values
  # below 2048 exactly, then 1024 sub-buckets per power of two, up to one
  # hour in microseconds. record = bucket index + :counters.add;
  # quantiles = walk the buckets.
  import Bitwise

  @sub 2048
  @half 1024
  @highest 3_600_000_000
  @buckets 2048 + 22 * 1024

  def new(opts \\ []), do: :counters.new(@buckets, opts)

  def record(ref, value) do
    :counters.add(ref, index(min(value, @highest)) + 1, 1)
  end

  def index(v) when v < @sub, do: v

  def index(v) do
    # e: how far v must shift right to fall in 1024..2047.
    e = shift(v >>> 11, 0)
    @sub + (e - 1) * @half + ((v >>> e) - @half)
  end

  defp shift(0, e), do: e
  defp shift(v, e), do: shift(v >>> 1, e + 1)

  # The highest value of bucket i.
  def value(i) when i < @sub, do: i

  def value(i) do
    e = div(i - @sub, @half) + 1
    sub = rem(i - @sub, @half) + @half
    ((sub + 1) <<< e) - 1
  end

  def record_binary(ref, <<v::little-unsigned-64, rest::binary>>) do
    record(ref, v)
    record_binary(ref, rest)
  end

  def record_binary(_ref, <<>>), do: :ok

  # The baseline's serialized form: its non-zero buckets as {index, count},
  # in the compressed external term format (the closest plain-Elixir
  # counterpart of V2 compressed).
  def serialize(ref) do
    for(i <- 1..@buckets, (c = :counters.get(ref, i)) > 0, do: {i, c})
    |> :erlang.term_to_binary([:compressed])
  end

  def merge_serialized(bins) do
    into = new()

    for bin <- bins, {i, c} <- :erlang.binary_to_term(bin) do
      :counters.add(into, i, c)
    end

    into
  end

  # Sorted quantiles: one walk for the total, one until the last target.
  def quantiles(ref, qs) do
    total = total(ref, 1, 0)
    targets = Enum.map(qs, fn q -> max(1, ceil(q * total)) end)
    walk(ref, 1, 0, targets, [])
  end

  defp total(_ref, i, acc) when i > @buckets, do: acc
  defp total(ref, i, acc), do: total(ref, i + 1, acc + :counters.get(ref, i))

  defp walk(_ref, _i, _acc, [], out), do: Enum.reverse(out)
  defp walk(_ref, i, _acc, _targets, out) when i > @buckets, do: Enum.reverse(out)

  defp walk(ref, i, acc, [t | rest] = targets, out) do
    acc = acc + :counters.get(ref, i)

    if acc >= t,
      do: walk_same(ref, i, acc, rest, [value(i - 1) | out]),
      else: walk(ref, i + 1, acc, targets, out)
  end

  defp walk_same(ref, i, acc, [t | rest], out) when acc >= t,
    do: walk_same(ref, i, acc, rest, [value(i - 1) | out])

  defp walk_same(ref, i, acc, targets, out), do: walk(ref, i + 1, acc, targets, out)
end

defmodule Bench.Histograms do
  @moduledoc false
  import Bitwise

  alias ClusterScope.Metrics.Histogram

  @qs [0.5, 0.9, 0.99, 0.999]

  def run do
    quick = System.get_env("QUICK") in ["1", "true"]
    records = if quick, do: 2_000_000, else: 10_000_000
    batch_values = 1_000_000
    quantile_reps = if quick, do: 2_000, else: 10_000
    baseline_quantile_reps = if quick, do: 20, else: 100
    merge_reps = if quick, do: 10, else: 30

    IO.puts(
      "Histogram benchmark (#{if quick, do: "QUICK", else: "full"}): " <>
        "#{System.schedulers_online()} schedulers, OTP #{System.otp_release()}, " <>
        "core loaded: #{ClusterScope.Native.loaded?()}"
    )

    values = latency_values(65_536)

    # -- one record from Elixir ------------------------------------------
    {:ok, h} = Histogram.new()
    b = Bench.Baseline.new()
    loop_record(values, div(records, 10), &Histogram.record(h, &1))
    loop_record(values, div(records, 10), &Bench.Baseline.record(b, &1))

    record_ns = best_of(3, fn -> ns_per(records, fn -> loop_hist(h, values, records) end) end)
    base_ns = best_of(3, fn -> ns_per(records, fn -> loop_base(b, values, records) end) end)
    line("record, 1 process", record_ns, "ns", base_ns, 150, :max)

    # -- from 2 processes at once ----------------------------------------
    {:ok, h2} = Histogram.new()
    b2 = Bench.Baseline.new([:write_concurrency])
    record2_ns = best_of(3, fn -> concurrent_ns(2, records, &loop_hist(h2, values, &1)) end)
    base2_ns = best_of(3, fn -> concurrent_ns(2, records, &loop_base(b2, values, &1)) end)
    line("record, 2 processes at once (per call, each)", record2_ns, "ns", base2_ns, 150, :max)
    %{count: c2} = Histogram.stats(h2)
    IO.puts("    (2-process histogram holds #{c2} values: none lost)")

    # -- batch ------------------------------------------------------------
    batch =
      for i <- 0..(batch_values - 1), into: <<>>, do: <<elem(values, band(i, 0xFFFF))::little-64>>

    {:ok, hb} = Histogram.new()
    bb = Bench.Baseline.new()

    batch_s =
      best_of(5, fn ->
        {us, {:ok, ^batch_values}} = :timer.tc(fn -> Histogram.record_batch(hb, batch) end)
        us / 1.0e6
      end)

    base_batch_s =
      best_of(2, fn ->
        {us, :ok} = :timer.tc(fn -> Bench.Baseline.record_binary(bb, batch) end)
        us / 1.0e6
      end)

    batch_rate = batch_values / batch_s / 1.0e6
    base_batch_rate = batch_values / base_batch_s / 1.0e6
    line("batch record of a 1M-value binary", batch_rate, "M values/s", base_batch_rate, 50, :min)

    # -- quantiles --------------------------------------------------------
    {:ok, hq} = Histogram.new()
    bq = Bench.Baseline.new()
    Enum.each(0..9, fn _ -> {:ok, _} = Histogram.record_batch(hq, batch) end)
    Bench.Baseline.record_binary(bq, batch)

    {:ok, ours} = Histogram.quantiles(hq, @qs)
    theirs = Bench.Baseline.quantiles(bq, @qs)
    IO.puts("    quantiles #{inspect(@qs)}: NIF #{inspect(ours)}, baseline #{inspect(theirs)}")

    quantile_us =
      best_of(3, fn ->
        {us, _} =
          :timer.tc(fn -> repeat(quantile_reps, fn -> Histogram.quantiles(hq, @qs) end) end)

        us / quantile_reps
      end)

    base_quantile_us =
      best_of(3, fn ->
        {us, _} =
          :timer.tc(fn ->
            repeat(baseline_quantile_reps, fn -> Bench.Baseline.quantiles(bq, @qs) end)
          end)

        us / baseline_quantile_reps
      end)

    line("4 quantiles of 10M values", quantile_us, "us", base_quantile_us, 10, :max)

    # -- merging 100 serialized histograms ---------------------------------
    # Each: 10,000 latency-like values (one operation's latencies on one node).
    serialized =
      for i <- 1..100 do
        {:ok, h} = Histogram.new()
        vs = latency_values(10_000, i)
        {:ok, _} = Histogram.record_batch(h, Tuple.to_list(vs))
        {:ok, bin} = Histogram.serialize(h)
        {:ok, raw} = Histogram.serialize(h, compressed: false)
        {bin, raw}
      end

    compressed = Enum.map(serialized, &elem(&1, 0))
    uncompressed = Enum.map(serialized, &elem(&1, 1))

    # The same values in the baseline's buckets, serialized its way.
    baseline_serialized =
      for i <- 1..100 do
        b = Bench.Baseline.new()
        vs = latency_values(10_000, i)
        Enum.each(Tuple.to_list(vs), &Bench.Baseline.record(b, &1))
        Bench.Baseline.serialize(b)
      end

    base_merge_ms =
      best_of(merge_reps, fn ->
        {us, _} = :timer.tc(fn -> Bench.Baseline.merge_serialized(baseline_serialized) end)
        us / 1000
      end)

    merge_ms = best_of(merge_reps, fn -> merge_ms(compressed) end)
    merge_raw_ms = best_of(merge_reps, fn -> merge_ms(uncompressed) end)
    {:ok, merged} = Histogram.merge_serialized(compressed)
    %{count: merged_count} = Histogram.stats(merged)

    IO.puts(
      "  merge 100 serialized histograms (V2 compressed, #{avg_size(compressed)} B each): " <>
        "#{fmt(merge_ms)} ms (target <= 2 ms: #{verdict(merge_ms <= 2)}); " <>
        "#{merged_count} values; baseline (:counters buckets, compressed term_to_binary, " <>
        "#{avg_size(baseline_serialized)} B each): #{fmt(base_merge_ms)} ms"
    )

    IO.puts(
      "  merge 100 serialized histograms (V2 uncompressed, #{avg_size(uncompressed)} B each): " <>
        "#{fmt(merge_raw_ms)} ms"
    )

    {ser_us, _} = :timer.tc(fn -> repeat(100, fn -> Histogram.serialize(merged) end) end)
    {de_us, _} = :timer.tc(fn -> repeat(100, fn -> Histogram.deserialize(hd(compressed)) end) end)

    IO.puts(
      "  serialize one (compressed): #{fmt(ser_us / 100)} us; deserialize one: #{fmt(de_us / 100)} us"
    )

    IO.puts("")

    IO.puts(
      "RESULT bench=histograms record_ns=#{fmt(record_ns)} baseline_record_ns=#{fmt(base_ns)} " <>
        "ratio=#{fmt(base_ns / record_ns)}"
    )

    IO.puts(
      "RESULT bench=histograms record_2proc_ns=#{fmt(record2_ns)} " <>
        "baseline_record_2proc_ns=#{fmt(base2_ns)} ratio=#{fmt(base2_ns / record2_ns)}"
    )

    IO.puts(
      "RESULT bench=histograms batch_mvalues_per_s=#{fmt(batch_rate)} " <>
        "baseline_batch_mvalues_per_s=#{fmt(base_batch_rate)} " <>
        "ratio=#{fmt(batch_rate / base_batch_rate)}"
    )

    IO.puts(
      "RESULT bench=histograms quantile_us=#{fmt(quantile_us)} " <>
        "baseline_quantile_us=#{fmt(base_quantile_us)} ratio=#{fmt(base_quantile_us / quantile_us)}"
    )

    IO.puts(
      "RESULT bench=histograms merge100_ms=#{fmt(merge_ms)} " <>
        "baseline_merge100_ms=#{fmt(base_merge_ms)} ratio=#{fmt(base_merge_ms / merge_ms)} " <>
        "merge100_uncompressed_ms=#{fmt(merge_raw_ms)}"
    )
  end

  # Latency-like values: mostly 10 us .. 10 ms, 1% up to 1 s.
  defp latency_values(n, seed \\ 42) do
    :rand.seed(:exsss, {seed, 7, 13})

    for _ <- 1..n do
      if :rand.uniform(100) == 1,
        do: :rand.uniform(1_000_000),
        else: 9 + :rand.uniform(10_000)
    end
    |> List.to_tuple()
  end

  defp loop_record(values, n, fun) do
    Enum.each(0..(n - 1), fn i -> fun.(elem(values, band(i, 0xFFFF))) end)
  end

  # Tight loops, one per implementation (no closure call in the way).
  defp loop_hist(_h, _values, 0), do: :ok

  defp loop_hist(h, values, n) do
    :ok = Histogram.record(h, elem(values, band(n, 0xFFFF)))
    loop_hist(h, values, n - 1)
  end

  defp loop_base(_b, _values, 0), do: :ok

  defp loop_base(b, values, n) do
    :ok = Bench.Baseline.record(b, elem(values, band(n, 0xFFFF)))
    loop_base(b, values, n - 1)
  end

  defp ns_per(n, fun) do
    {us, _} = :timer.tc(fun)
    us * 1000 / n
  end

  # Each of `procs` processes makes `n` calls at once; ns per call as each
  # process sees it (wall clock / n).
  defp concurrent_ns(procs, n, fun) do
    parent = self()

    pids =
      for _ <- 1..procs do
        spawn_link(fn ->
          receive do
            :go -> send(parent, {:done, self(), fun.(n)})
          end
        end)
      end

    start = System.monotonic_time(:nanosecond)
    Enum.each(pids, &send(&1, :go))
    Enum.each(pids, fn pid -> receive do: ({:done, ^pid, :ok} -> :ok) end)
    (System.monotonic_time(:nanosecond) - start) / n
  end

  defp merge_ms(bins) do
    {us, {:ok, _}} = :timer.tc(fn -> Histogram.merge_serialized(bins) end)
    us / 1000
  end

  defp repeat(0, _fun), do: :ok

  defp repeat(n, fun) do
    fun.()
    repeat(n - 1, fun)
  end

  defp best_of(n, fun), do: Enum.min(for _ <- 1..n, do: fun.())

  defp avg_size(bins), do: div(Enum.sum(Enum.map(bins, &byte_size/1)), length(bins))

  defp line(what, ours, unit, base, target, kind) do
    met = if kind == :max, do: ours <= target, else: ours >= target
    bound = if kind == :max, do: "<=", else: ">="

    IO.puts(
      "  #{what}: #{fmt(ours)} #{unit} (baseline #{fmt(base)} #{unit}; " <>
        "target #{bound} #{target} #{unit}: #{verdict(met)})"
    )
  end

  defp verdict(true), do: "met"
  defp verdict(false), do: "MISSED"

  defp fmt(x) when is_float(x) and x >= 100, do: :erlang.float_to_binary(x, decimals: 0)
  defp fmt(x) when is_float(x) and x >= 10, do: :erlang.float_to_binary(x, decimals: 1)
  defp fmt(x) when is_float(x), do: :erlang.float_to_binary(x, decimals: 2)
  defp fmt(x) when is_integer(x), do: fmt(x * 1.0)
end

Bench.Histograms.run()
