defmodule ClusterScope.Procs.Collector do
  @moduledoc """
  Walks every process of this node in chunks into a Rust snapshot.

  ## Why it is safe on a busy node

    * **Bounded heap.** The pid list is handed to Rust by a short-lived
      process (`ClusterScope.Native.procs_pids_new/1`), which exits at once;
      the collecting process then takes `chunk` pids at a time, reads their
      rows (`ClusterScope.Procs.Rows`) and pushes them into the snapshot.
      Its heap holds one chunk, whatever the process count: with the default
      chunk of #{500} rows, well under a megabyte.
    * **No long NIF.** Pushing a chunk is a normal-scheduler NIF that takes
      a fraction of a millisecond; taking the pid list is a dirty one.
    * **No process is stopped.** Each process is read with one
      `process_info/2` (see `ClusterScope.Procs.Rows` for what that copies).
    * **Cost.** About 1-2 µs per process on the collecting process
      (100,000 processes: a few hundred milliseconds of one scheduler);
      the snapshot costs about 60 bytes per process in Rust memory, freed
      when the snapshot is garbage collected.
  """

  alias ClusterScope.Native
  alias ClusterScope.Procs.Rows

  @default_chunk 500

  @typedoc "What a collection measured."
  @type stats :: %{
          processes: non_neg_integer(),
          duration_us: non_neg_integer(),
          peak_heap_bytes: non_neg_integer() | nil,
          taken_at_ms: integer()
        }

  @doc """
  Collects this node's processes into a new snapshot. Options: `:chunk`
  (rows per push, default #{@default_chunk}), `:measure_heap` (track the
  collecting process's peak memory, for benchmarks).
  Returns `{:ok, snapshot, stats}` or `{:error, reason}`.
  """
  @spec collect(keyword()) :: {:ok, reference(), stats()} | {:error, term()}
  def collect(opts \\ []) do
    chunk = Keyword.get(opts, :chunk, @default_chunk)
    measure? = Keyword.get(opts, :measure_heap, false)
    started = System.monotonic_time(:microsecond)

    with {:ok, cursor} <- pid_cursor(),
         snapshot when is_reference(snapshot) <- Native.procs_snapshot_new(),
         {:ok, peak} <- fill(cursor, snapshot, chunk, Rows.context(), measure?, 0) do
      %{rows: rows} = Native.procs_snapshot_info(snapshot)

      {:ok, snapshot,
       %{
         processes: rows,
         duration_us: System.monotonic_time(:microsecond) - started,
         peak_heap_bytes: if(measure?, do: peak),
         taken_at_ms: div(started, 1000)
       }}
    else
      {:error, _} = error -> error
      other -> {:error, other}
    end
  end

  # The pid list lives only on a helper process's heap, for as long as the
  # dirty NIF takes to copy it.
  defp pid_cursor do
    parent = self()
    ref = make_ref()

    {pid, monitor} =
      spawn_monitor(fn ->
        send(parent, {ref, Native.procs_pids_new(:erlang.processes())})
      end)

    receive do
      {^ref, cursor} when is_reference(cursor) ->
        Process.demonitor(monitor, [:flush])
        {:ok, cursor}

      {^ref, {:error, _} = error} ->
        Process.demonitor(monitor, [:flush])
        error

      {^ref, other} ->
        Process.demonitor(monitor, [:flush])
        {:error, other}

      {:DOWN, ^monitor, :process, ^pid, reason} ->
        {:error, {:pid_list_failed, reason}}
    end
  end

  defp fill(cursor, snapshot, chunk, ctx, measure?, peak) do
    case Native.procs_pids_next(cursor, chunk) do
      [] ->
        {:ok, peak}

      pids when is_list(pids) ->
        {rows, ctx} = Rows.rows(pids, :pid, ctx)

        case Native.procs_snapshot_push(snapshot, rows) do
          :ok ->
            peak = if measure?, do: max(peak, own_memory()), else: peak
            fill(cursor, snapshot, chunk, ctx, measure?, peak)

          {:error, _} = error ->
            error
        end

      {:error, _} = error ->
        error
    end
  end

  defp own_memory do
    {:memory, bytes} = Process.info(self(), :memory)
    bytes
  end
end
