defmodule ClusterScope.Agent.Processes.Collector do
  @moduledoc """
  Walks every process of this node in chunks into a Rust snapshot.

  ## Why it is safe on a busy node

    * **Bounded heap.** The pid list is handed to Rust by a short-lived
      process (`ClusterScope.Agent.Processes.Walker`), which exits at once; each
      worker (one, or two on a node of 20,000 processes or more) then takes
      `chunk` pids at a time, reads their rows (`ClusterScope.Agent.Processes.Rows`)
      and pushes them into the snapshot. A worker's heap holds one chunk,
      whatever the process count: with the default chunk of #{1_000} rows,
      about a megabyte.
    * **No long NIF.** Pushing a chunk is a normal-scheduler NIF that takes
      a fraction of a millisecond; taking the pid list is a dirty one.
    * **No process is stopped.** Each process is read with one
      `process_info/2` (see `ClusterScope.Agent.Processes.Rows` for what that copies);
      a process with a large dictionary seen by an earlier collection is
      read without its dictionary, initial call and group leader, kept by
      pid in `ClusterScope.Agent.Processes.RowCache`.
    * **Cost.** About 2-3 µs per process (100,000 processes: 200-300 ms
      on two loaded cores), most of it the signal each process handles for
      `process_info/2`'s `memory`;
      the snapshot costs about 60 bytes per process in Rust memory, freed
      when the snapshot is garbage collected.
  """

  alias ClusterScope.Native
  alias ClusterScope.Agent.Processes.{RowCache, Rows, Walker}

  @default_chunk 1_000

  @typedoc "What a collection measured."
  @type stats :: %{
          processes: non_neg_integer(),
          duration_us: non_neg_integer(),
          peak_heap_bytes: non_neg_integer() | nil,
          taken_at_ms: integer()
        }

  @doc """
  Collects this node's processes into a new snapshot, on one or two
  schedulers (`ClusterScope.Agent.Processes.Walker`), leaving out the collection's
  own processes. Options: `:chunk` (rows per push, default
  #{@default_chunk}), `:workers` (default 2), `:exclude` (more pids to
  leave out), `:cache` (the `ClusterScope.Agent.Processes.RowCache` table, default
  the node's when it exists; `nil`: read every process whole),
  `:measure_heap` (track the workers' peak memory, for
  benchmarks).
  Returns `{:ok, snapshot, stats}` or `{:error, reason}`.
  """
  @spec collect(keyword()) :: {:ok, reference(), stats()} | {:error, term()}
  def collect(opts \\ []) do
    chunk = Keyword.get(opts, :chunk, @default_chunk)
    measure? = Keyword.get(opts, :measure_heap, false)
    started = System.monotonic_time(:microsecond)

    cache = Keyword.get_lazy(opts, :cache, &RowCache.whereis/0)
    max = RowCache.max_entries()

    with snapshot when is_reference(snapshot) <- Native.procs_snapshot_new(),
         {:ok, states} <-
           Walker.walk(
             fn -> {Rows.context(), 0} end,
             fn pids, state -> push(pids, state, snapshot, measure?, cache, max) end,
             chunk: chunk,
             workers: Keyword.get(opts, :workers, 2),
             exclude: Keyword.get(opts, :exclude, [])
           ) do
      %{rows: rows} = Native.procs_snapshot_info(snapshot)
      peak = states |> Enum.map(&elem(&1, 1)) |> Enum.max(fn -> 0 end)

      {:ok, snapshot, stats(rows, started, if(measure?, do: peak))}
    else
      {:error, _} = error -> error
      other -> {:error, other}
    end
  end

  @doc """
  A snapshot of numbers only, for windows: each process is read with one
  three-item `process_info/2` (`memory`, `reductions`,
  `message_queue_len`), the rest of its row left empty (no name, initial
  call, application; type `:plain`). A window of two such snapshots has
  exact counts, totals and rankings; its winners are then read whole
  (`ClusterScope.Native.procs_window_details/2`). Options and result as
  `collect/1`.
  """
  @spec collect_thin(keyword()) :: {:ok, reference(), stats()} | {:error, term()}
  def collect_thin(opts \\ []) do
    started = System.monotonic_time(:microsecond)

    with snapshot when is_reference(snapshot) <- Native.procs_snapshot_new(),
         {:ok, _} <-
           Walker.walk(fn -> nil end, &push_thin(&1, &2, snapshot), opts) do
      %{rows: rows} = Native.procs_snapshot_info(snapshot)

      {:ok, snapshot, stats(rows, started, nil)}
    else
      {:error, _} = error -> error
      other -> {:error, other}
    end
  end

  @doc false
  # The stats of a walk that started at `started_us` (monotonic) and read
  # `rows` processes.
  @spec stats(non_neg_integer(), integer(), non_neg_integer() | nil) :: stats()
  def stats(rows, started_us, peak_heap_bytes) do
    %{
      processes: rows,
      duration_us: System.monotonic_time(:microsecond) - started_us,
      peak_heap_bytes: peak_heap_bytes,
      taken_at_ms: div(started_us, 1000)
    }
  end

  defp push_thin(pids, state, snapshot) do
    rows = thin_rows(pids)

    result =
      case Native.procs_snapshot_push(snapshot, rows) do
        {:error, {:busy, _}} -> Native.procs_snapshot_push_dirty(snapshot, rows)
        other -> other
      end

    if result == :ok, do: {:ok, state}, else: result
  end

  defp thin_rows([]), do: []

  defp thin_rows([pid | rest]) do
    case :erlang.process_info(pid, [:memory, :reductions, :message_queue_len]) do
      [{_, m}, {_, r}, {_, q}] ->
        [
          {pid, m, r, Rows.count(q), 0, 0, 0, :undefined, :undefined, [], :undefined, :undefined,
           :plain}
          | thin_rows(rest)
        ]

      :undefined ->
        thin_rows(rest)
    end
  end

  defp push(pids, {ctx, peak}, snapshot, measure?, cache, max) do
    {rows, ctx} =
      if cache, do: Rows.cached_rows(pids, ctx, cache, max), else: Rows.rows(pids, :pid, ctx)

    result =
      case Native.procs_snapshot_push(snapshot, rows) do
        # The other worker is pushing: wait for it on a dirty scheduler.
        {:error, {:busy, _}} -> Native.procs_snapshot_push_dirty(snapshot, rows)
        other -> other
      end

    case result do
      :ok -> {:ok, {ctx, if(measure?, do: max(peak, own_memory()), else: peak)}}
      {:error, _} = error -> error
    end
  end

  defp own_memory do
    {:memory, bytes} = Process.info(self(), :memory)
    bytes
  end
end
