defmodule ClusterScope.Procs.Snapshots do
  @moduledoc """
  This node's latest process snapshot, shared by every caller.

  Paging through a list asks each node for one page at a time; without this
  server every page would walk every process again. A snapshot younger than
  the caller's `max_age_ms` is reused, and callers who arrive while a
  collection runs wait for that one: at most one collection runs at a time
  on a node, however many users ask. The collection itself runs in a process
  (see `ClusterScope.Procs.Collector`), so this server's heap stays small
  and a failed collection costs only an error reply.

  Memory: one snapshot (about 60 bytes per process, in Rust) plus the one
  being built.
  """

  use GenServer

  alias ClusterScope.Procs.Collector

  @typedoc "A snapshot and when its collection started (monotonic ms)."
  @type entry :: %{snapshot: reference(), taken_at_ms: integer(), processes: non_neg_integer()}

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  A snapshot whose collection started at most `max_age_ms` ago (0: one
  started after this call). Waits at most `timeout` ms.
  """
  @spec get(non_neg_integer(), timeout()) :: {:ok, entry()} | {:error, term()}
  def get(max_age_ms, timeout \\ 30_000) do
    requested_at = System.monotonic_time(:millisecond)
    GenServer.call(__MODULE__, {:get, requested_at - max_age_ms}, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, {:noproc, _} -> {:error, :not_running}
    :exit, reason -> {:error, {:snapshot_server, reason}}
  end

  @impl true
  def init(_opts), do: {:ok, %{latest: nil, task: nil, waiters: []}}

  @impl true
  def handle_call({:get, not_before}, from, state) do
    case state do
      %{latest: %{taken_at_ms: at} = latest} when at >= not_before ->
        {:reply, {:ok, latest}, state}

      %{task: nil} ->
        {:noreply, start_collection(%{state | waiters: [{from, not_before}]})}

      _collecting ->
        {:noreply, %{state | waiters: [{from, not_before} | state.waiters]}}
    end
  end

  @impl true
  def handle_info({tag, result}, %{task: %{tag: tag, monitor: monitor}} = state) do
    Process.demonitor(monitor, [:flush])
    finish(result, %{state | task: nil})
  end

  def handle_info({:DOWN, ref, :process, _, reason}, %{task: %{monitor: ref}} = state) do
    finish({:error, {:collector_crashed, reason}}, %{state | task: nil})
  end

  def handle_info(_msg, state), do: {:noreply, state}

  # A process of its own (not a task of the operation supervisor, which may
  # be full): starting it cannot fail, and its death is only an error reply.
  defp start_collection(state) do
    server = self()
    tag = make_ref()
    {_pid, monitor} = spawn_monitor(fn -> send(server, {tag, Collector.collect()}) end)

    %{state | task: %{tag: tag, monitor: monitor}}
  end

  defp finish({:ok, snapshot, stats}, state) do
    entry = %{snapshot: snapshot, taken_at_ms: stats.taken_at_ms, processes: stats.processes}
    # Waiters who asked for a collection that started after this one began
    # get the next one.
    {served, later} = Enum.split_with(state.waiters, fn {_, nb} -> entry.taken_at_ms >= nb end)
    Enum.each(served, fn {from, _} -> GenServer.reply(from, {:ok, entry}) end)
    state = %{state | latest: entry, waiters: later}
    {:noreply, if(later == [], do: state, else: start_collection(state))}
  end

  defp finish({:error, _} = error, state) do
    Enum.each(state.waiters, fn {from, _} -> GenServer.reply(from, error) end)
    {:noreply, %{state | waiters: []}}
  end
end
