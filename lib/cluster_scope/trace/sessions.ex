defmodule ClusterScope.Trace.Sessions do
  @moduledoc """
  The trace sessions created from this node: their tracers on every traced
  node, their owners and subscribers.

  A session is owned by a process (the caller of `ClusterScope.Trace.start/2`,
  or this server for sessions created over HTTP or the CLI, which then live
  until their duration ends). The server monitors owners and tracers: an
  owner's death stops the session everywhere; a tracer that goes away (its
  node died or was cut off) ends that node's part with the reason, and the
  tracers monitor this server in turn, so no tracer outlives the node that
  created its session. At most #{100} sessions are kept; the oldest ended
  ones are forgotten first.
  """

  use GenServer

  alias ClusterScope.Trace.Tracer

  @max_sessions 100

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Registers a session whose tracers are started (see `ClusterScope.Trace`)."
  @spec create(map(), pid() | nil) :: {:ok, map()} | {:error, term()}
  def create(spec, owner), do: GenServer.call(__MODULE__, {:create, spec, owner}, 60_000)

  @doc "A session by id."
  @spec get(String.t()) :: {:ok, map()} | {:error, :not_found}
  def get(id), do: GenServer.call(__MODULE__, {:get, id})

  @doc "Every session of this node, newest first."
  @spec list() :: [map()]
  def list, do: GenServer.call(__MODULE__, :list)

  @doc "Stops a session's tracing on every node (its events stay readable)."
  @spec stop(String.t()) :: {:ok, map()} | {:error, :not_found}
  def stop(id), do: GenServer.call(__MODULE__, {:stop, id}, 30_000)

  @doc "Sends `{:cluster_scope, :trace, id, event}` to `pid` for every kept event."
  @spec subscribe(String.t(), pid()) :: :ok | {:error, :not_found}
  def subscribe(id, pid), do: GenServer.call(__MODULE__, {:subscribe, id, pid})

  @impl true
  def init(_opts), do: {:ok, %{sessions: %{}, monitors: %{}}}

  @impl true
  def handle_call({:create, spec, owner}, _from, state) do
    id = "t" <> Base.url_encode64(:crypto.strong_rand_bytes(9), padding: false)
    owner = owner || self()
    registry = self()

    results =
      spec.nodes
      |> Enum.map(fn node ->
        {node,
         Task.async(fn ->
           try do
             :erpc.call(node, Tracer, :start, [id, spec, owner, registry], 15_000)
           catch
             :error, {:erpc, reason} -> {:error, {:node_unavailable, reason}}
             :error, {:exception, :undef, _} -> {:error, :not_running}
             kind, reason -> {:error, {kind, reason}}
           end
         end)}
      end)
      |> Enum.map(fn {node, task} -> {node, Task.await(task, :infinity)} end)

    tracers = for {node, {:ok, pid}} <- results, into: %{}, do: {node, pid}
    failed = for {node, {:error, reason}} <- results, into: %{}, do: {node, reason}

    if tracers == %{} do
      {:reply, {:error, failed}, state}
    else
      monitors =
        Enum.reduce(tracers, state.monitors, fn {node, pid}, acc ->
          Map.put(acc, Process.monitor(pid), {:tracer, id, node})
        end)

      monitors =
        if owner != self(),
          do: Map.put(monitors, Process.monitor(owner), {:owner, id}),
          else: monitors

      session = %{
        id: id,
        spec: spec,
        owner: owner,
        tracers: tracers,
        failed: failed,
        ended: %{},
        subscribers: [],
        created_at_ms: System.system_time(:millisecond)
      }

      state = %{state | sessions: Map.put(state.sessions, id, session), monitors: monitors}
      {:reply, {:ok, session}, prune(state)}
    end
  end

  def handle_call({:get, id}, _from, state) do
    case state.sessions do
      %{^id => session} -> {:reply, {:ok, session}, state}
      _ -> {:reply, {:error, :not_found}, state}
    end
  end

  def handle_call(:list, _from, state) do
    {:reply, state.sessions |> Map.values() |> Enum.sort_by(& &1.created_at_ms, :desc), state}
  end

  def handle_call({:stop, id}, _from, state) do
    case state.sessions do
      %{^id => session} ->
        stop_tracers(session)
        {:reply, {:ok, session}, state}

      _ ->
        {:reply, {:error, :not_found}, state}
    end
  end

  def handle_call({:subscribe, id, pid}, _from, state) do
    case state.sessions do
      %{^id => session} ->
        if session.subscribers == [],
          do: Enum.each(session.tracers, fn {_, t} -> Tracer.forward(t, self()) end)

        monitors = Map.put(state.monitors, Process.monitor(pid), {:subscriber, id})
        session = %{session | subscribers: [pid | session.subscribers]}

        {:reply, :ok,
         %{state | sessions: Map.put(state.sessions, id, session), monitors: monitors}}

      _ ->
        {:reply, {:error, :not_found}, state}
    end
  end

  @impl true
  def handle_info({:cluster_scope_trace, id, event}, state) do
    case state.sessions do
      %{^id => %{subscribers: subs}} ->
        Enum.each(subs, &send(&1, {:cluster_scope, :trace, id, event}))

      _ ->
        :ok
    end

    {:noreply, state}
  end

  def handle_info({:cluster_scope_trace_stopped, id, node, reason}, state) do
    {:noreply, update(state, id, &%{&1 | ended: Map.put_new(&1.ended, node, reason)})}
  end

  def handle_info({:DOWN, ref, :process, pid, reason}, state) do
    {what, monitors} = Map.pop(state.monitors, ref)
    state = %{state | monitors: monitors}

    case what do
      {:tracer, id, node} ->
        why = if reason == :noconnection, do: :node_down, else: :tracer_exited
        {:noreply, update(state, id, &%{&1 | ended: Map.put_new(&1.ended, node, why)})}

      {:owner, id} ->
        # The tracers monitor the owner too; this is the registry's record.
        state = update(state, id, fn s -> stop_tracers(s) && s end)
        {:noreply, state}

      {:subscriber, id} ->
        {:noreply, update(state, id, &%{&1 | subscribers: List.delete(&1.subscribers, pid)})}

      nil ->
        {:noreply, state}
    end
  end

  def handle_info(_msg, state), do: {:noreply, state}

  defp update(state, id, fun) do
    case state.sessions do
      %{^id => session} -> %{state | sessions: Map.put(state.sessions, id, fun.(session))}
      _ -> state
    end
  end

  defp stop_tracers(session) do
    session.tracers
    |> Enum.map(fn {_node, pid} ->
      Task.async(fn ->
        try do
          Tracer.stop_tracing(pid)
        catch
          :exit, _ -> :ok
        end
      end)
    end)
    |> Task.await_many(15_000)

    true
  end

  # Forget the oldest sessions that have ended everywhere past the bound.
  defp prune(%{sessions: sessions} = state) when map_size(sessions) <= @max_sessions, do: state

  defp prune(state) do
    {ended, _running} =
      state.sessions
      |> Map.values()
      |> Enum.split_with(&(map_size(&1.ended) >= map_size(&1.tracers)))

    drop =
      ended
      |> Enum.sort_by(& &1.created_at_ms)
      |> Enum.take(map_size(state.sessions) - @max_sessions)
      |> Enum.map(& &1.id)

    %{state | sessions: Map.drop(state.sessions, drop)}
  end
end
