defmodule ClusterScope.Agent.Processes.Snapshots do
  @moduledoc """
  The latest process snapshot of each source, shared by every caller, and
  the windows built from them. A source is this node (`:local`, collected
  by `ClusterScope.Agent.Processes.Collector`) or a connected node without
  ClusterScope (`{:agentless, node}`, collected from here by
  `ClusterScope.Procs.Agentless`).

  Paging through a list asks each node for one page at a time; without this
  server every page would walk every process again. A snapshot younger than
  the caller's `max_age_ms` is reused, and callers who arrive while a
  collection runs wait for that one: at most one collection runs at a time
  per source, however many users ask. The collection itself runs in a
  process, so this server's heap stays small and a failed collection costs
  only an error reply.

  ## Windows

  A window (`window/3`) is two snapshots `window_ms` apart. Windows are
  coalesced per source: the first window request collects a *start*
  snapshot, and every window request that arrives while that start is at
  most its own `window_ms` old joins it, whatever its length, instead of
  collecting its own. A caller that joins gets a window of exactly the
  length it asked for, starting at the shared start, so it ends no later
  than its own would have (sooner when it joined late); the end snapshot
  is the first collection that starts at or after start + `window_ms`,
  shared by every caller whose window ends by then. So N concurrent
  identical requests cost one window (two collections) and are answered
  together after about one window, and at most one collection runs at a
  time per source whatever the mix of lengths. A request whose window is
  shorter than the age of the current start begins a new start (the old
  one stays in use by those who joined it).

  Memory: per source, one snapshot (about 60 bytes per process, in Rust)
  plus the one being built, plus the start of the current window; a
  column (`{:column, sort_by}`) is 16 bytes per process. A column or an
  agentless source nobody asked about for #{div(60_000, 1000)} s is
  dropped.
  """

  use GenServer

  alias ClusterScope.Native
  alias ClusterScope.Agent.Processes.{Collector, Grouped, Ranked, RowCache}
  alias ClusterScope.Procs.Agentless

  @agentless_keep_ms 60_000

  @typedoc """
  Whose processes: this node's (a full snapshot), one number of each of
  this node's processes (`{:column, sort_by}`, see
  `ClusterScope.Agent.Processes.Ranked`), three numbers of each of this node's
  processes (`:thin`, for windows: `ClusterScope.Agent.Processes.Collector.collect_thin/1`),
  this node's counts and memory by
  application (`{:groups, :application}`, see `ClusterScope.Agent.Processes.Grouped`),
  or an agentless node's read from here.
  """
  @type source ::
          :local | :thin | {:column, atom()} | {:groups, :application} | {:agentless, node()}

  @typedoc "A snapshot and when its collection started (monotonic ms)."
  @type entry :: %{snapshot: reference(), taken_at_ms: integer(), processes: non_neg_integer()}

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "`get/3` of this node's processes, waiting at most `timeout` ms."
  @spec get(non_neg_integer(), timeout()) :: {:ok, entry()} | {:error, term()}
  def get(max_age_ms, timeout \\ 30_000), do: get(:local, max_age_ms, timeout)

  @doc "`window/3` of this node's processes, waiting at most `timeout` ms per snapshot."
  @spec window(pos_integer(), timeout()) :: {:ok, entry(), entry()} | {:error, term()}
  def window(window_ms, timeout \\ 30_000), do: window(:local, window_ms, timeout)

  @doc """
  A snapshot of `source` whose collection started at most `max_age_ms`
  ago (0: one started after this call). Waits at most `timeout` ms (an
  agentless collection started by this call is bounded by it too).
  """
  @spec get(source(), non_neg_integer(), timeout()) :: {:ok, entry()} | {:error, term()}
  def get(source, max_age_ms, timeout) do
    since(source, System.monotonic_time(:millisecond) - max_age_ms, timeout)
  end

  @doc """
  The latest snapshot of `source` if its collection started at most
  `max_age_ms` ago, without collecting one: `{:ok, entry}` or `:none`.
  """
  @spec cached(source(), non_neg_integer()) :: {:ok, entry()} | :none
  def cached(source, max_age_ms) do
    case call({:cached, source, System.monotonic_time(:millisecond) - max_age_ms}, 5_000) do
      {:ok, entry} -> {:ok, entry}
      _ -> :none
    end
  end

  @doc """
  A snapshot of `source` whose collection started at or after
  `not_before_ms` (monotonic milliseconds). Waits at most `timeout` ms.
  """
  @spec since(source(), integer(), timeout()) :: {:ok, entry()} | {:error, term()}
  def since(source, not_before_ms, timeout) do
    call({:get, source, not_before_ms, :get, timeout}, timeout)
  end

  @doc """
  The two snapshots of a window of `window_ms` on `source`:
  `{:ok, before, later}` with `later.taken_at_ms - before.taken_at_ms >=
  window_ms`, shared with every concurrent window request (see the module
  doc). Waits at most `timeout` ms for each snapshot (plus the window).
  """
  @spec window(source(), pos_integer(), timeout()) ::
          {:ok, entry(), entry()} | {:error, term()}
  def window(source, window_ms, timeout) do
    with {:ok, before} <- call({:window_start, source, window_ms, timeout}, timeout) do
      ends_at = before.taken_at_ms + window_ms
      Process.sleep(max(ends_at - System.monotonic_time(:millisecond), 0))

      with {:ok, later} <- since(source, ends_at, timeout), do: {:ok, before, later}
    end
  end

  @doc """
  What this server has done for `source` since it started (or since an
  agentless source was last dropped): `collections` (snapshots collected)
  and `windows` (window starts; a window request that joined one is not
  counted again).
  """
  @spec stats(source()) :: %{collections: non_neg_integer(), windows: non_neg_integer()}
  def stats(source \\ :local), do: GenServer.call(__MODULE__, {:stats, source})

  defp call(request, timeout) do
    GenServer.call(__MODULE__, request, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, {:noproc, _} -> {:error, :not_running}
    :exit, reason -> {:error, {:snapshot_server, reason}}
  end

  @impl true
  def init(_opts) do
    RowCache.new()
    {:ok, %{sources: %{}, tags: %{}, sweeper: nil}}
  end

  defp fresh do
    %{
      latest: nil,
      task: nil,
      waiters: [],
      # The start of the current window, and the not-before of a start
      # being collected (window requests join either).
      start: nil,
      pending_start: nil,
      collections: 0,
      windows: 0,
      used_at: System.monotonic_time(:millisecond)
    }
  end

  @impl true
  def handle_call({:get, source, not_before, kind, timeout}, from, state) do
    s = source_state(state, source)

    case s do
      %{latest: %{taken_at_ms: at} = latest} when at >= not_before ->
        {:reply, {:ok, latest}, put_source(state, source, s)}

      %{task: nil} ->
        s = %{s | waiters: [{from, not_before, kind}]}
        {:noreply, start_collection(state, source, s, timeout)}

      _collecting ->
        {:noreply,
         put_source(state, source, %{s | waiters: [{from, not_before, kind} | s.waiters]})}
    end
  end

  def handle_call({:window_start, source, window_ms, timeout}, from, state) do
    now = System.monotonic_time(:millisecond)
    s = source_state(state, source)

    cond do
      s.start != nil and now - s.start.taken_at_ms <= window_ms ->
        {:reply, {:ok, s.start}, put_source(state, source, s)}

      s.pending_start != nil and now - s.pending_start <= window_ms ->
        handle_call({:get, source, s.pending_start, :start, timeout}, from, state)

      true ->
        state = put_source(state, source, %{s | pending_start: now})
        handle_call({:get, source, now, :start, timeout}, from, state)
    end
  end

  def handle_call({:cached, source, not_before}, _from, state) do
    case state.sources do
      %{^source => %{latest: %{taken_at_ms: at} = latest}} when at >= not_before ->
        {:reply, {:ok, latest}, state}

      _ ->
        {:reply, :none, state}
    end
  end

  def handle_call({:stats, source}, _from, state) do
    s = Map.get(state.sources, source, fresh())
    {:reply, %{collections: s.collections, windows: s.windows}, state}
  end

  @impl true
  def handle_info({tag, result}, %{tags: tags} = state) when is_map_key(tags, tag) do
    {source, tags} = Map.pop(tags, tag)
    s = source_state(state, source)
    Process.demonitor(s.task.monitor, [:flush])
    finish(source, result, %{state | tags: tags}, %{s | task: nil})
  end

  def handle_info({:DOWN, ref, :process, _, _}, %{sweeper: ref} = state),
    do: {:noreply, %{state | sweeper: nil}}

  def handle_info({:DOWN, ref, :process, _, reason}, state) do
    case Enum.find(state.tags, fn {_, source} ->
           match?(%{task: %{monitor: ^ref}}, state.sources[source])
         end) do
      {tag, source} ->
        s = %{source_state(state, source) | task: nil}
        finish(source, {:error, {:collector_crashed, reason}}, drop_tag(state, tag), s)

      nil ->
        {:noreply, state}
    end
  end

  def handle_info({:expire, source}, state) do
    now = System.monotonic_time(:millisecond)

    case state.sources do
      %{^source => %{task: nil, waiters: [], used_at: at}} when now - at >= @agentless_keep_ms ->
        {:noreply, %{state | sources: Map.delete(state.sources, source)}}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info(_msg, state), do: {:noreply, state}

  defp drop_tag(state, tag), do: %{state | tags: Map.delete(state.tags, tag)}

  defp source_state(state, source) do
    s = Map.get_lazy(state.sources, source, &fresh/0)
    %{s | used_at: System.monotonic_time(:millisecond)}
  end

  defp put_source(state, source, s), do: %{state | sources: Map.put(state.sources, source, s)}

  # A process of its own (not a task of the operation supervisor, which may
  # be full): starting it cannot fail, and its death is only an error reply.
  defp start_collection(state, source, s, timeout) do
    server = self()
    tag = make_ref()
    {_pid, monitor} = spawn_monitor(fn -> send(server, {tag, collect(source, timeout)}) end)
    s = %{s | task: %{tag: tag, monitor: monitor}, collections: s.collections + 1}
    put_source(%{state | tags: Map.put(state.tags, tag, source)}, source, s)
  end

  defp collect(:local, _timeout), do: Collector.collect()
  defp collect(:thin, _timeout), do: Collector.collect_thin()
  defp collect({:column, sort_by}, _timeout), do: Ranked.collect(sort_by)
  defp collect({:groups, :application}, _timeout), do: Grouped.collect()

  defp collect({:agentless, node}, timeout) do
    started = System.monotonic_time(:microsecond)

    with {:ok, snapshot} <- Agentless.collect(node, timeout) do
      %{rows: rows} = Native.procs_snapshot_info(snapshot)
      {:ok, snapshot, %{processes: rows, taken_at_ms: div(started, 1000)}}
    end
  end

  # After a collection of this node: drop the cache entries of processes
  # gone, in a low-priority process, one sweep at a time.
  defp sweep_later(%{sweeper: nil} = state) do
    {_, ref} =
      spawn_monitor(fn ->
        Process.flag(:priority, :low)
        RowCache.sweep()
      end)

    %{state | sweeper: ref}
  end

  defp sweep_later(state), do: state

  defp finish(source, {:ok, snapshot, stats}, state, s) do
    state = if source == :local, do: sweep_later(state), else: state

    entry = %{snapshot: snapshot, taken_at_ms: stats.taken_at_ms, processes: stats.processes}
    # Waiters who asked for a collection that started after this one began
    # get the next one.
    {served, later} = Enum.split_with(s.waiters, fn {_, nb, _} -> entry.taken_at_ms >= nb end)
    Enum.each(served, fn {from, _, _} -> GenServer.reply(from, {:ok, entry}) end)
    s = %{s | latest: entry, waiters: later}

    s =
      if Enum.any?(served, fn {_, _, kind} -> kind == :start end) do
        pending = if Enum.any?(later, &(elem(&1, 2) == :start)), do: s.pending_start
        %{s | start: entry, pending_start: pending, windows: s.windows + 1}
      else
        s
      end

    expire_later(source)

    if later == [],
      do: {:noreply, put_source(state, source, s)},
      else: {:noreply, start_collection(state, source, s, default_timeout())}
  end

  defp finish(source, {:error, _} = error, state, s) do
    Enum.each(s.waiters, fn {from, _, _} -> GenServer.reply(from, error) end)
    expire_later(source)
    {:noreply, put_source(state, source, %{s | waiters: [], pending_start: nil})}
  end

  defp expire_later(:local), do: :ok

  defp expire_later(source),
    do: Process.send_after(self(), {:expire, source}, @agentless_keep_ms)

  defp default_timeout, do: ClusterScope.Fanout.default_timeout()
end
