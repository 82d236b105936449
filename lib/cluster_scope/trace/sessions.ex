defmodule ClusterScope.Trace.Sessions do
  @moduledoc """
  The trace sessions created from this node: their tracers on every traced
  node, their owners and subscribers.

  A session is owned by a process (the caller of `ClusterScope.Trace.start/2`,
  or ClusterScope's top supervisor for sessions created over HTTP or the
  CLI, which then live until their duration ends). The tracers monitor their
  owner and this node's `ClusterScope.Supervisor`, so no tracer outlives
  either or ClusterScope here; a crash of this server ends no session: they are kept
  in a table the keeper holds until it restarts. This server monitors the tracers: one
  that goes away (its node died or was cut off) ends that node's part with
  the reason. Nothing here calls another node: starting and stopping tracers
  is done by the caller (`ClusterScope.Trace`), so a slow node never blocks
  this server. At most #{100} sessions are kept; the oldest ended
  ones are forgotten first.
  """

  use GenServer

  alias ClusterScope.StateKeeper
  alias ClusterScope.Trace.Tracer

  @max_sessions 100

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Records a session whose tracers are already started (see
  `ClusterScope.Trace.start/2`): a quick call, so a slow node never blocks
  this server.
  """
  @spec register(map()) :: :ok
  def register(session), do: GenServer.call(__MODULE__, {:register, session})

  @doc "A session by id."
  @spec get(String.t()) :: {:ok, map()} | {:error, :not_found}
  def get(id), do: GenServer.call(__MODULE__, {:get, id})

  @doc "Every session of this node, newest first."
  @spec list() :: [map()]
  def list, do: GenServer.call(__MODULE__, :list)

  @doc "Sends `{:cluster_scope, :trace, id, event}` to `pid` for every kept event."
  @spec subscribe(String.t(), pid()) :: :ok | {:error, :not_found}
  def subscribe(id, pid), do: GenServer.call(__MODULE__, {:subscribe, id, pid})

  @keep :cluster_scope_keep_trace_sessions

  @impl true
  def init(_opts) do
    # Sessions survive a crash of this server: they are kept in a table the
    # keeper holds meanwhile; their tracers and subscribers are watched again
    # and the tracers of sessions with subscribers forward here again.
    {_, keep} = StateKeeper.claim(@keep, [:set, :protected, :named_table])

    state =
      Enum.reduce(:ets.tab2list(keep), %{sessions: %{}, monitors: %{}, keep: keep}, fn
        {id, session}, acc ->
          subscribers = Enum.filter(session.subscribers, &Process.alive?/1)
          session = %{session | subscribers: subscribers}
          running = Map.drop(session.tracers, Map.keys(session.ended))

          monitors =
            Enum.reduce(running, acc.monitors, fn {node, pid}, m ->
              Map.put(m, Process.monitor(pid), {:tracer, id, node})
            end)

          monitors =
            Enum.reduce(
              subscribers,
              monitors,
              &Map.put(&2, Process.monitor(&1), {:subscriber, id})
            )

          if subscribers != [], do: Enum.each(running, fn {_, t} -> Tracer.forward(t, self()) end)

          %{acc | sessions: Map.put(acc.sessions, id, session), monitors: monitors}
      end)

    # Sessions on all nodes follow the membership: a node that joins (or
    # comes back) while one runs gets a tracer for the rest of its duration.
    :ok = :net_kernel.monitor_nodes(true, node_type: :visible)
    {:ok, state}
  end

  @impl true
  def handle_call({:register, session}, _from, state) do
    monitors =
      Enum.reduce(session.tracers, state.monitors, fn {node, pid}, acc ->
        Map.put(acc, Process.monitor(pid), {:tracer, session.id, node})
      end)

    session = Map.merge(%{ended: %{}, subscribers: []}, session)
    state = put_session(%{state | monitors: monitors}, session)
    {:reply, :ok, prune(state)}
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

  def handle_call({:subscribe, id, pid}, _from, state) do
    case state.sessions do
      %{^id => session} ->
        if session.subscribers == [],
          do: Enum.each(session.tracers, fn {_, t} -> Tracer.forward(t, self()) end)

        monitors = Map.put(state.monitors, Process.monitor(pid), {:subscriber, id})
        session = %{session | subscribers: [pid | session.subscribers]}
        {:reply, :ok, put_session(%{state | monitors: monitors}, session)}

      _ ->
        {:reply, {:error, :not_found}, state}
    end
  end

  @impl true
  def handle_cast({:add_tracer, id, node, pid}, state) do
    case state.sessions do
      %{^id => session} ->
        ref = Process.monitor(pid)
        if session.subscribers != [], do: Tracer.forward(pid, self())

        session = %{
          session
          | tracers: Map.put(session.tracers, node, pid),
            ended: Map.delete(session.ended, node),
            spec: Map.update(session.spec, :nodes, [node], &Enum.uniq(&1 ++ [node]))
        }

        {:noreply,
         put_session(
           %{state | monitors: Map.put(state.monitors, ref, {:tracer, id, node})},
           session
         )}

      _ ->
        # The session ended meanwhile: the tracer has nothing to do.
        Tracer.stop_tracing(pid)
        {:noreply, state}
    end
  end

  @impl true
  def handle_info({:nodeup, node, _info}, state) do
    now = System.system_time(:millisecond)

    for {id, session} <- state.sessions,
        session.spec[:all_nodes] == true,
        not Map.has_key?(session.tracers, node) or Map.has_key?(session.ended, node),
        running?(session),
        left = session.spec.duration_ms - (now - session.created_at_ms),
        left > 1_000 do
      join(id, %{session.spec | duration_ms: left}, session.owner, node)
    end

    {:noreply, state}
  end

  def handle_info({:nodedown, _node, _info}, state), do: {:noreply, state}

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

      {:subscriber, id} ->
        {:noreply, update(state, id, &%{&1 | subscribers: List.delete(&1.subscribers, pid)})}

      nil ->
        {:noreply, state}
    end
  end

  def handle_info(msg, state) do
    StateKeeper.handle_heir(msg, state.keep)
    {:noreply, state}
  end

  defp update(state, id, fun) do
    case state.sessions do
      %{^id => session} -> put_session(state, fun.(session))
      _ -> state
    end
  end

  # A session still traces somewhere (not stopped, not at its limits everywhere).
  defp running?(session), do: map_size(session.ended) < map_size(session.tracers)

  # Starting a tracer means calling the node: in a task of its own, so this
  # server never waits for another node. The node's ClusterScope may start
  # after its nodeup: a few tries over 10 s.
  defp join(id, spec, owner, node) do
    me = self()
    anchor = Process.whereis(ClusterScope.Supervisor) || me

    Task.start(fn ->
      Enum.reduce_while(1..20, nil, fn _, _ ->
        case ClusterScope.Fanout.call(node, Tracer, :start, [id, spec, owner, anchor], 10_000) do
          {:ok, {:ok, pid}} when is_pid(pid) ->
            GenServer.cast(me, {:add_tracer, id, node, pid})
            {:halt, :ok}

          {:ok, {:error, :not_running}} ->
            # ClusterScope still starting there.
            Process.sleep(500)
            {:cont, nil}

          {:ok, {:error, _reason}} ->
            # Nothing to trace there (a name not registered, the module not
            # loaded) or a conflict: that node stays out of the session.
            {:halt, :skipped}

          {:error, _node_error} ->
            Process.sleep(500)
            {:cont, nil}
        end
      end)
    end)
  end

  # Every change to a session goes to the kept table too.
  defp put_session(state, session) do
    :ets.insert(state.keep, {session.id, session})
    %{state | sessions: Map.put(state.sessions, session.id, session)}
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

    Enum.each(drop, &:ets.delete(state.keep, &1))
    %{state | sessions: Map.drop(state.sessions, drop)}
  end
end
