defmodule ClusterScope.Metrics.OperationLatency do
  @moduledoc """
  The latency of every operation run on this node, one HDR histogram per
  operation name (microseconds, 1 us to one hour, 3 significant figures).

  `ClusterScope.Operation.Runner` records the duration of every run (success
  or error, whenever the operation is known) with one call to `record/2`.
  The histograms live in a named, public ETS table (`#{inspect(__MODULE__)}`)
  owned by this GenServer, which does nothing else; a histogram is created
  on an operation's first run (`:ets.insert_new/2`: when two processes race,
  one histogram wins and both record into it).

  ## Cost and safety

    * `record/2` is one `:ets.lookup_element/3` on a read-concurrent table
      and one NIF call: about 200 nanoseconds. It never raises: without the table
      or the native core it does nothing.
    * At most 1,000 operation names get a histogram (184 KiB each, plus
      2 KiB per scheduler that recorded); runs of further names are not
      recorded.
    * `local_summary/0` reads each histogram (tens of microseconds each);
      `serialized/1` serializes each on a dirty scheduler (tens to hundreds
      of microseconds each compressed, about 10 uncompressed).
  """

  use GenServer

  alias ClusterScope.Metrics.Histogram
  alias ClusterScope.Native

  @table __MODULE__
  @max_operations 1_000
  @highest 3_600_000_000
  @quantiles [0.5, 0.9, 0.99, 0.999]

  @typedoc "Latency figures of one operation, in microseconds."
  @type summary :: %{
          name: String.t(),
          count: non_neg_integer(),
          p50_us: non_neg_integer(),
          p90_us: non_neg_integer(),
          p99_us: non_neg_integer(),
          p999_us: non_neg_integer(),
          max_us: non_neg_integer()
        }

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    # The histograms survive a crash of this server (ClusterScope.StateKeeper).
    ClusterScope.StateKeeper.claim(@table, [:named_table, :public, :set, read_concurrency: true])
    {:ok, nil}
  end

  @impl true
  def handle_info(msg, state) do
    ClusterScope.StateKeeper.handle_heir(msg, @table)
    {:noreply, state}
  end

  @doc "The most operation names that get a histogram."
  @spec max_operations() :: pos_integer()
  def max_operations, do: @max_operations

  @doc """
  Records one run of an operation: `operation` is its name, or the runner's
  metadata map (with `:name`), or `nil` (an unknown operation: nothing is
  recorded). Never raises; always `:ok`.
  """
  @spec record(String.t() | %{name: String.t()} | nil, non_neg_integer()) :: :ok
  def record(operation, duration_us) do
    do_record(operation, duration_us)
    :ok
  catch
    _, _ -> :ok
  end

  defp do_record(%{name: name}, us), do: do_record(name, us)

  # lookup_element copies only the reference out of the table; a missing
  # name (or table) raises badarg.
  defp do_record(name, us) when is_binary(name) and is_integer(us) and us >= 0 do
    Native.hist_record(:ets.lookup_element(@table, name, 2), us)
  rescue
    ArgumentError -> create_and_record(name, us)
  end

  defp do_record(_, _), do: :ok

  defp create_and_record(name, us) do
    with true <- :ets.info(@table, :size) < @max_operations,
         {:ok, hist} <- Native.hist_new(1, @highest, 3) do
      # Whoever inserts first wins; a loser records into the winner's.
      :ets.insert_new(@table, {name, hist})
      [{_, hist}] = :ets.lookup(@table, name)
      Native.hist_record(hist, us)
    end
  end

  @doc "The histogram of an operation, if it has run here."
  @spec histogram(String.t()) :: {:ok, Histogram.t()} | :error
  def histogram(name) do
    case :ets.lookup(@table, name) do
      [{_, hist}] -> {:ok, hist}
      [] -> :error
    end
  rescue
    ArgumentError -> :error
  end

  @doc """
  Per operation run on this node: count, p50, p90, p99, p999 and max, in
  microseconds, sorted by name.
  """
  @spec local_summary() :: [summary()]
  def local_summary do
    entries()
    |> Enum.flat_map(fn {name, hist} ->
      case summarize(name, hist) do
        {:ok, summary} -> [summary]
        {:error, _} -> []
      end
    end)
    |> Enum.sort_by(& &1.name)
  end

  @doc """
  Every operation's histogram, serialized: `%{name => binary}`. What other
  nodes fetch to merge the cluster's figures.

  HdrHistogram's V2 compressed form by default; `compressed: false` gives the
  uncompressed V2 form, about twice as large (a few KiB per operation) but
  several times cheaper to write and to read, which is what
  `ClusterScope.Operations.OperationMetrics` asks for.
  """
  @spec serialized(keyword()) :: %{String.t() => binary()}
  def serialized(opts \\ []) do
    for {name, hist} <- entries(),
        {:ok, bin} <- [Histogram.serialize(hist, opts)],
        into: %{},
        do: {name, bin}
  end

  @doc """
  The summary (see `t:summary/0`) of histogram `hist` under `name`.
  """
  @spec summarize(String.t(), Histogram.t()) :: {:ok, summary()} | Histogram.error()
  def summarize(name, hist) do
    with {:ok, [p50, p90, p99, p999]} <- Histogram.quantiles(hist, @quantiles),
         %{count: count, max: max} <- Histogram.stats(hist) do
      {:ok,
       %{
         name: name,
         count: count,
         p50_us: p50,
         p90_us: p90,
         p99_us: p99,
         p999_us: p999,
         max_us: max
       }}
    end
  end

  defp entries do
    :ets.tab2list(@table)
  rescue
    ArgumentError -> []
  end
end
