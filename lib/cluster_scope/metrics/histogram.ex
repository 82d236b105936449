defmodule ClusterScope.Metrics.Histogram do
  @moduledoc """
  HDR histograms in ClusterScope's Rust core: record latencies (or any
  non-negative integers) from many processes at once, ask for quantiles, and
  merge histograms from every node of a cluster.

  A histogram keeps every value to a fixed number of significant figures
  (3 by default: within 0.1%) between a lowest discernible value and a
  highest trackable value, in a fixed amount of memory whatever the number of
  values: 184 KiB for the default 1..3_600_000_000 (one hour in
  microseconds), plus 2 KiB per scheduler thread that has recorded into it.
  A value above the highest is clamped to it and counted in `:saturated`, so
  the tail is never under-reported.

  A histogram is a reference to a NIF resource: it lives as long as a process
  or a table holds the reference, and can be shared freely between
  processes, which all record into it concurrently. It cannot cross nodes:
  send `serialize/1`'s binary (HdrHistogram's V2 compressed format, which
  every HdrHistogram implementation reads) and `deserialize/1` or
  `merge_serialized/1` it on the other side.

  ## What each call costs

  Measured on a 2-core x86-64 machine, 1 us..1 h at 3 figures (see
  `bench/histograms.exs`):

    * `record/2`, `record_n/3` - about 65 ns per call from Elixir, on the
      calling scheduler, also with several processes recording into one
      histogram at once: a record appends to a small buffer of the calling
      scheduler thread's own (no lock or cache line shared with the other
      schedulers); one call in 256 empties it into the histogram.
    * `record_batch/2` - about 4 ns per value (over 200 M values/s), on the
      calling scheduler up to 64 KiB (8192 values, under 50 us), on a dirty
      CPU scheduler above. A list is first encoded into a binary in Elixir.
    * `quantiles/2` - about 5 us for 4 quantiles: one walk over the counts up
      to the highest quantile asked.
    * `stats/1` - tens of microseconds: one walk over every distinct value.
    * `new/1` - about 120 us: most of it is the operating system mapping
      the counts array (184 KiB) on first touch.
    * `deserialize/1` - dirty CPU scheduler, about 120 us.
    * `reset/1` - clears the counts (a memset of the counts array).
    * `merge/2` - about 100 us: copies `from`, adds it to `into`.
    * `serialize/1` - dirty CPU scheduler; 30 to 700 us depending on how
      many distinct values there are, most of it in the deflate encoder.
      `serialize/2` with `compressed: false` writes the uncompressed V2
      form, about twice as large and several times cheaper to write and read.
    * `merge_serialized/1` - dirty CPU scheduler; about 60 us per histogram
      in the list (40 us uncompressed): inflating, decoding, and adding the
      whole counts array.

  These figures grow with the counts array, which grows with the range and
  above all with the significant figures (5 figures over the same range: 16
  MiB). On a histogram of over 1 MiB of counts, `new/1`, `quantiles/2`,
  `stats/1`, `reset/1` and `merge/2` run on a dirty CPU scheduler.

  ## Why it is safe on a production node

    * No call runs for more than about a millisecond on a normal scheduler:
      those that can are on dirty CPU schedulers (see above).
    * Memory is fixed when the histogram is created, and a configuration
      whose counts would need more than 16 MiB is refused.
    * No atom is created: errors are `{:error, {code, detail}}` (the one
      shape of every NIF, see `ClusterScope.Native`) with a fixed set of
      codes (`:invalid_config`, `:invalid_value`, `:invalid_quantile`,
      `:invalid_batch`, `:invalid_serialized`, `:too_large`, `:empty`,
      `:serialize_failed`), or `{:error, :native_unavailable}` when the core
      is not loaded.
    * Bad arguments are answered with an error, never an exception; a panic
      in the core would become an exception in the caller, never a crash of
      the VM.
    * `deserialize/1` trusts the lengths written inside a compressed
      histogram (they cannot be checked before inflating it): give it
      histograms serialized by ClusterScope nodes, not arbitrary input from
      the network. It refuses inputs over 1 MiB.
  """

  alias ClusterScope.Native

  import Bitwise, only: [<<<: 2]

  @max_u64 (1 <<< 64) - 1
  # Above these sizes the dirty CPU variants run (see the moduledoc).
  @batch_dirty_bytes 65_536

  @typedoc "A histogram: a reference to a NIF resource, shareable between processes."
  @type t :: reference()

  @typedoc "Errors of the histogram calls."
  @type error :: {:error, :native_unavailable} | {:error, Native.error()}

  @typedoc "What `stats/1` returns."
  @type stats :: %{
          count: non_neg_integer(),
          min: non_neg_integer(),
          max: non_neg_integer(),
          mean: float(),
          stdev: float(),
          saturated: non_neg_integer(),
          lowest: pos_integer(),
          highest: pos_integer(),
          significant_figures: 1..5
        }

  @doc """
  A new, empty histogram.

  Options:

    * `:lowest` - the lowest discernible value, at least 1 (default 1)
    * `:highest` - the highest trackable value, at least twice `:lowest`
      (default 3_600_000_000: one hour in microseconds)
    * `:significant_figures` - 1 to 5 (default 3)

  A bad option gives `{:error, {:invalid_config, message}}` naming it.
  """
  @spec new(keyword()) :: {:ok, t()} | error()
  def new(opts \\ [])

  def new(opts) when is_list(opts) do
    lowest = Keyword.get(opts, :lowest, 1)
    highest = Keyword.get(opts, :highest, 3_600_000_000)
    figures = Keyword.get(opts, :significant_figures, 3)

    cond do
      not u64?(lowest) ->
        config_error("lowest", lowest)

      not u64?(highest) ->
        config_error("highest", highest)

      not (is_integer(figures) and figures in 0..255) ->
        config_error("significant_figures", figures)

      true ->
        with :use_dirty <- Native.hist_new(lowest, highest, figures),
             do: Native.hist_new_dirty(lowest, highest, figures)
    end
  end

  def new(opts),
    do: {:error, {:invalid_config, "options must be a keyword list, got #{short(opts)}"}}

  @doc """
  Records one value (a non-negative integer). Values above the highest
  trackable value are clamped to it and counted as saturated.
  """
  @spec record(t(), non_neg_integer()) :: :ok | error()
  def record(hist, value)
      when is_reference(hist) and is_integer(value) and value >= 0 and value <= @max_u64,
      do: Native.hist_record(hist, value)

  def record(hist, value) when is_reference(hist) and is_integer(value) and value > @max_u64,
    do: Native.hist_record(hist, @max_u64)

  def record(hist, value), do: invalid(hist, value, "value")

  @doc "Records `value` `n` times (`n` a non-negative integer)."
  @spec record_n(t(), non_neg_integer(), non_neg_integer()) :: :ok | error()
  def record_n(hist, value, n)
      when is_reference(hist) and is_integer(value) and value >= 0 and is_integer(n) and n >= 0 do
    if n > @max_u64,
      do: {:error, {:invalid_value, "n is over 2^64 - 1"}},
      else: Native.hist_record_n(hist, min(value, @max_u64), n)
  end

  def record_n(hist, value, n) do
    if is_integer(value) and value >= 0,
      do: invalid(hist, n, "n"),
      else: invalid(hist, value, "value")
  end

  @doc """
  Records many values at once: a list of non-negative integers, or a binary
  of consecutive little-endian unsigned 64-bit integers
  (`<<v::little-unsigned-64, ...>>`). Returns `{:ok, count}`.

  Binaries over 64 KiB are recorded on a dirty CPU scheduler. A list with a
  value that is not a non-negative integer records nothing.
  """
  @spec record_batch(t(), [non_neg_integer()] | binary()) :: {:ok, non_neg_integer()} | error()
  def record_batch(hist, values) when is_reference(hist) and is_binary(values) do
    if byte_size(values) > @batch_dirty_bytes,
      do: Native.hist_record_batch_dirty(hist, values),
      else: Native.hist_record_batch(hist, values)
  end

  def record_batch(hist, values) when is_reference(hist) and is_list(values) do
    case encode_batch(values, []) do
      {:ok, iodata} -> record_batch(hist, IO.iodata_to_binary(iodata))
      {:error, _} = error -> error
    end
  end

  def record_batch(hist, values), do: invalid(hist, values, "batch")

  @doc """
  The values at several quantiles (numbers from 0.0 to 1.0), in the order
  given: `quantiles(h, [0.5, 0.99])` gives `{:ok, [p50, p99]}`. Each is the
  highest value equivalent, at the histogram's precision, to the recorded
  value at that quantile. An empty histogram gives zeros.
  """
  @spec quantiles(t(), [number()]) :: {:ok, [non_neg_integer()]} | error()
  def quantiles(hist, quantiles) when is_reference(hist) and is_list(quantiles) do
    case to_floats(quantiles, 0, []) do
      {:ok, floats} ->
        with :use_dirty <- Native.hist_quantiles(hist, floats),
             do: Native.hist_quantiles_dirty(hist, floats)

      {:error, _} = error ->
        error
    end
  end

  def quantiles(hist, quantiles), do: invalid(hist, quantiles, "quantiles")

  @doc """
  Count, min, max, mean, standard deviation, saturated count and the
  configuration (`lowest`, `highest`, `significant_figures`). All figures
  are 0 for an empty histogram.
  """
  @spec stats(t()) :: stats() | error()
  def stats(hist) when is_reference(hist) do
    with :use_dirty <- Native.hist_stats(hist), do: Native.hist_stats_dirty(hist)
  end

  def stats(hist), do: invalid(hist, hist, "histogram")

  @doc "Empties the histogram."
  @spec reset(t()) :: :ok | error()
  def reset(hist) when is_reference(hist) do
    with :use_dirty <- Native.hist_reset(hist), do: Native.hist_reset_dirty(hist)
  end

  def reset(hist), do: invalid(hist, hist, "histogram")

  @doc """
  Adds every value of `from` to `into` (`from` is unchanged; `into` may be
  `from`). Histograms of different configurations merge: `from`'s values
  above `into`'s highest value are clamped and counted as saturated.
  """
  @spec merge(t(), t()) :: :ok | error()
  def merge(into, from) when is_reference(into) and is_reference(from) do
    with :use_dirty <- Native.hist_merge(into, from), do: Native.hist_merge_dirty(into, from)
  end

  def merge(into, from), do: invalid(into, from, "histogram")

  @doc """
  The histogram in HdrHistogram's V2 compressed (deflate) format.

  Options: `compressed: false` writes the uncompressed V2 form instead.
  Both are read by `deserialize/1`. The saturated count does not travel (the
  format has no field for it); saturated values travel as values at the
  highest trackable value.
  """
  @spec serialize(t(), keyword()) :: {:ok, binary()} | error()
  def serialize(hist, opts \\ [])

  def serialize(hist, opts) when is_reference(hist) and is_list(opts) do
    result =
      if Keyword.get(opts, :compressed, true),
        do: Native.hist_serialize(hist),
        else: Native.hist_serialize_uncompressed(hist)

    case result do
      bin when is_binary(bin) -> {:ok, bin}
      {:error, _} = error -> error
    end
  end

  def serialize(hist, _opts), do: invalid(hist, hist, "histogram")

  @doc """
  A new histogram from a binary written by `serialize/1` (or by any
  HdrHistogram V2 implementation), with the configuration it was written
  with. Runs on a dirty CPU scheduler (the size of the histogram is only
  known once it is read). Inputs over 1 MiB are refused.
  """
  @spec deserialize(binary()) :: {:ok, t()} | error()
  def deserialize(binary) when is_binary(binary), do: Native.hist_deserialize(binary)

  def deserialize(other), do: {:error, {:invalid_serialized, "not a binary: #{short(other)}"}}

  @doc """
  One new histogram holding every value of a list of serialized histograms,
  with the first one's configuration (see `merge/2` for the others'). Runs
  on a dirty CPU scheduler. An empty list gives `{:error, {:empty, _}}`; a
  bad binary an `:invalid_serialized` error naming its position.
  """
  @spec merge_serialized([binary()]) :: {:ok, t()} | error()
  def merge_serialized(binaries) when is_list(binaries) do
    if Enum.all?(binaries, &is_binary/1),
      do: Native.hist_merge_serialized(binaries),
      else: {:error, {:invalid_serialized, "every element of the list must be a binary"}}
  end

  def merge_serialized(other),
    do: {:error, {:invalid_serialized, "not a list of binaries: #{short(other)}"}}

  defp u64?(v), do: is_integer(v) and v >= 0 and v <= @max_u64

  defp config_error(field, value),
    do: {:error, {:invalid_config, "invalid histogram #{field}: #{short(value)} is not valid"}}

  defp invalid(hist, _value, _what) when not is_reference(hist),
    do: {:error, {:invalid_value, "not a histogram: #{short(hist)}"}}

  defp invalid(_hist, value, what),
    do: {:error, {:invalid_value, "invalid #{what}: #{short(value)}"}}

  defp encode_batch([], acc), do: {:ok, acc}

  defp encode_batch([v | rest], acc) when is_integer(v) and v >= 0 and v <= @max_u64,
    do: encode_batch(rest, [acc | <<v::little-unsigned-64>>])

  defp encode_batch([v | rest], acc) when is_integer(v) and v > @max_u64,
    do: encode_batch(rest, [acc | <<@max_u64::little-unsigned-64>>])

  defp encode_batch([v | _], _acc),
    do: {:error, {:invalid_value, "batch values must be non-negative integers, got #{short(v)}"}}

  defp encode_batch(other, _acc),
    do: {:error, {:invalid_value, "not a proper list: #{short(other)}"}}

  defp to_floats([], _i, acc), do: {:ok, Enum.reverse(acc)}

  defp to_floats([q | rest], i, acc) when is_number(q) and q >= 0 and q <= 1,
    do: to_floats(rest, i + 1, [q / 1 | acc])

  defp to_floats([q | _], i, _acc) do
    {:error,
     {:invalid_quantile,
      "quantile #{short(q)} at position #{i} is not a number between 0.0 and 1.0"}}
  end

  defp to_floats(other, _i, _acc),
    do: {:error, {:invalid_quantile, "not a proper list: #{short(other)}"}}

  defp short(term), do: inspect(term, limit: 5, printable_limit: 50)
end
