defmodule ClusterScope.Agent.Processes.Walker do
  @moduledoc """
  Walks every process of this node in chunks, on one or two schedulers,
  without its own processes.

  The pid list is handed to Rust by a short-lived helper process
  (`ClusterScope.Native.procs_pids_new/2`, dirty), so no Elixir heap holds
  it for long; then each worker takes `chunk` pids at a time from that
  shared cursor and calls the chunk function on them. On a node with at
  least #{20_000} processes and two schedulers online, two workers walk
  the list at once (the calling process and one linked helper), so a
  collection uses both cores of a small machine; below that, one.

  The walk's own processes (the caller, its workers, the helper that takes
  the pid list, and any pid in `:exclude`) are left out of the cursor, so
  ClusterScope's collections never show up in their own results.

  Safety: each worker's heap holds one chunk and whatever its state holds;
  workers are linked to the caller, so a crash of either ends the walk
  (the caller's collection then fails with a reason, as a crash did
  before); nothing outlives the walk.
  """

  alias ClusterScope.Native

  @default_chunk 1_000
  @parallel_above 20_000

  @typedoc "A chunk function: pids in, new worker state (or an error) out."
  @type chunk_fun :: ([pid()], term() -> {:ok, term()} | {:error, term()})

  @doc """
  Walks every process (but the walk's own) through `fun`, each worker
  starting from `init.()`. Options: `:chunk` (pids per call, 1..5000,
  default #{@default_chunk}), `:workers` (at most this many, default 2,
  never more than the schedulers online), `:exclude` (more pids to leave
  out, at most 32). Returns `{:ok, [final_state]}` (one per worker) or the
  first `{:error, reason}`.
  """
  @spec walk((() -> term()), chunk_fun(), keyword()) :: {:ok, [term()]} | {:error, term()}
  def walk(init, fun, opts \\ []) do
    chunk = Keyword.get(opts, :chunk, @default_chunk)
    count = workers(Keyword.get(opts, :workers, 2))
    parent = self()
    ref = make_ref()

    helpers =
      for _ <- 2..count//1 do
        spawn_link(fn ->
          receive do
            {^ref, :go, cursor} ->
              send(parent, {ref, :done, self(), loop(cursor, fun, init.(), chunk)})

            {^ref, :stop} ->
              :ok
          end
        end)
      end

    case pid_cursor([parent | helpers] ++ Keyword.get(opts, :exclude, [])) do
      {:ok, cursor} ->
        Enum.each(helpers, &send(&1, {ref, :go, cursor}))
        own = loop(cursor, fun, init.(), chunk)
        results = [own | Enum.map(helpers, &wait(ref, &1))]

        case Enum.find(results, &match?({:error, _}, &1)) do
          nil -> {:ok, Enum.map(results, fn {:ok, state} -> state end)}
          error -> error
        end

      {:error, _} = error ->
        Enum.each(helpers, &send(&1, {ref, :stop}))
        error
    end
  end

  @doc "How many workers a walk uses now (see the module doc)."
  @spec workers(pos_integer()) :: pos_integer()
  def workers(at_most \\ 2) do
    if :erlang.system_info(:process_count) >= @parallel_above,
      do: max(1, min(at_most, :erlang.system_info(:schedulers_online))),
      else: 1
  end

  defp wait(ref, pid) do
    receive do
      {^ref, :done, ^pid, result} -> result
    end
  end

  defp loop(cursor, fun, state, chunk) do
    case Native.procs_pids_next(cursor, chunk) do
      [] ->
        {:ok, state}

      pids when is_list(pids) ->
        case fun.(pids, state) do
          {:ok, state} -> loop(cursor, fun, state, chunk)
          {:error, _} = error -> error
        end

      {:error, _} = error ->
        error
    end
  end

  # The pid list lives only on a helper process's heap, for as long as the
  # dirty NIF takes to copy it; the helper leaves itself out too.
  defp pid_cursor(exclude) do
    parent = self()
    ref = make_ref()

    {pid, monitor} =
      spawn_monitor(fn ->
        send(parent, {ref, Native.procs_pids_new(:erlang.processes(), [self() | exclude])})
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
end
