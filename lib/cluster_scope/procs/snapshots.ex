defmodule ClusterScope.Procs.Snapshots do
  @moduledoc """
  This node's latest process snapshot, shared by every caller, and the
  windows built from them.

  Paging through a list asks each node for one page at a time; without this
  server every page would walk every process again. A snapshot younger than
  the caller's `max_age_ms` is reused, and callers who arrive while a
  collection runs wait for that one: at most one collection runs at a time
  on a node, however many users ask. The collection itself runs in a process
  (see `ClusterScope.Procs.Collector`), so this server's heap stays small
  and a failed collection costs only an error reply.

  ## Windows

  A window (`window/2`) is two snapshots `window_ms` apart. Windows are
  coalesced: the first window request collects a *start* snapshot, and
  every window request that arrives while that start is at most its own
  `window_ms` old joins it, whatever its length, instead of collecting its
  own. A caller that joins gets a window of exactly the length it asked
  for, starting at the shared start, so it ends no later than its own
  would have (sooner when it joined late); the end snapshot is the first
  collection that starts at or after start + `window_ms`, shared by every
  caller whose window ends by then. So N concurrent identical requests
  cost one window (two collections) and are answered together after about
  one window, and at most one collection runs at a time whatever the mix
  of lengths. A request whose window is shorter than the age of the
  current start begins a new start (the old one stays in use by those who
  joined it).

  Memory: one snapshot (about 60 bytes per process, in Rust) plus the one
  being built, plus the start snapshot of the current window.
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
    since(System.monotonic_time(:millisecond) - max_age_ms, timeout)
  end

  @doc """
  A snapshot whose collection started at or after `not_before_ms`
  (monotonic milliseconds). Waits at most `timeout` ms.
  """
  @spec since(integer(), timeout()) :: {:ok, entry()} | {:error, term()}
  def since(not_before_ms, timeout \\ 30_000) do
    call({:get, not_before_ms, :get}, timeout)
  end

  @doc """
  The two snapshots of a window of `window_ms` on this node:
  `{:ok, before, later}` with `later.taken_at_ms - before.taken_at_ms >=
  window_ms`, shared with every concurrent window request (see the module
  doc). Waits at most `timeout` ms for each snapshot (plus the window).
  """
  @spec window(pos_integer(), timeout()) :: {:ok, entry(), entry()} | {:error, term()}
  def window(window_ms, timeout \\ 30_000) do
    with {:ok, before} <- call({:window_start, window_ms}, timeout) do
      ends_at = before.taken_at_ms + window_ms
      Process.sleep(max(ends_at - System.monotonic_time(:millisecond), 0))

      with {:ok, later} <- since(ends_at, timeout), do: {:ok, before, later}
    end
  end

  @doc """
  What this server has done since it started: `collections` (snapshots
  collected) and `windows` (window starts; every window request that
  joined one is not counted again).
  """
  @spec stats() :: %{collections: non_neg_integer(), windows: non_neg_integer()}
  def stats, do: GenServer.call(__MODULE__, :stats)

  defp call(request, timeout) do
    GenServer.call(__MODULE__, request, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, {:noproc, _} -> {:error, :not_running}
    :exit, reason -> {:error, {:snapshot_server, reason}}
  end

  @impl true
  def init(_opts) do
    {:ok,
     %{
       latest: nil,
       task: nil,
       waiters: [],
       # The start of the current window, and the not-before of a start
       # being collected (window requests join either).
       start: nil,
       pending_start: nil,
       collections: 0,
       windows: 0
     }}
  end

  @impl true
  def handle_call({:get, not_before, kind}, from, state) do
    case state do
      %{latest: %{taken_at_ms: at} = latest} when at >= not_before ->
        {:reply, {:ok, latest}, state}

      %{task: nil} ->
        {:noreply, start_collection(%{state | waiters: [{from, not_before, kind}]})}

      _collecting ->
        {:noreply, %{state | waiters: [{from, not_before, kind} | state.waiters]}}
    end
  end

  def handle_call({:window_start, window_ms}, from, state) do
    now = System.monotonic_time(:millisecond)

    cond do
      state.start != nil and now - state.start.taken_at_ms <= window_ms ->
        {:reply, {:ok, state.start}, state}

      state.pending_start != nil and now - state.pending_start <= window_ms ->
        handle_call({:get, state.pending_start, :start}, from, state)

      true ->
        handle_call({:get, now, :start}, from, %{state | pending_start: now})
    end
  end

  def handle_call(:stats, _from, state) do
    {:reply, %{collections: state.collections, windows: state.windows}, state}
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

    %{state | task: %{tag: tag, monitor: monitor}, collections: state.collections + 1}
  end

  defp finish({:ok, snapshot, stats}, state) do
    entry = %{snapshot: snapshot, taken_at_ms: stats.taken_at_ms, processes: stats.processes}
    # Waiters who asked for a collection that started after this one began
    # get the next one.
    {served, later} = Enum.split_with(state.waiters, fn {_, nb, _} -> entry.taken_at_ms >= nb end)

    Enum.each(served, fn {from, _, _} -> GenServer.reply(from, {:ok, entry}) end)
    state = %{state | latest: entry, waiters: later}

    state =
      if Enum.any?(served, fn {_, _, kind} -> kind == :start end) do
        pending = if Enum.any?(later, &(elem(&1, 2) == :start)), do: state.pending_start
        %{state | start: entry, pending_start: pending, windows: state.windows + 1}
      else
        state
      end

    {:noreply, if(later == [], do: state, else: start_collection(state))}
  end

  defp finish({:error, _} = error, state) do
    Enum.each(state.waiters, fn {from, _, _} -> GenServer.reply(from, error) end)
    {:noreply, %{state | waiters: [], pending_start: nil}}
  end
end
