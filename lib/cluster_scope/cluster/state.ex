defmodule ClusterScope.Cluster.State do
  # A member cut off from here (tick timeout, or cut by global) stays in the
  # matrix this long, or until it comes back: a partition must not read as
  # healthy once Erlang gives up on the other side. Bounded in count too.
  @forget_down_ms 300_000
  @max_members 10_000

  @moduledoc """
  This node's knowledge of the cluster: members and their status, metadata,
  the connection matrix, its classification, and a bounded history of events.

  Membership comes from `:net_kernel.monitor_nodes/2` (with the nodedown
  reason) and from the ClusterScope agents in the `:pg` scope. The matrix
  comes from `ClusterScope.Cluster.Heartbeat`: what each node hears of the
  others, gossiped with the heartbeats. Every heartbeat interval the matrix is
  classified by the Rust core (`ClusterScope.Native.partition_classify/1`):
  healthy, node down, frozen, split (with majority/minority from this side),
  one-way, indirect; and heals are noticed per pair.

  Node status is one of `:up`, `:suspected` (this node no longer hears it),
  `:unreachable` (in another component of a split, or cut from this node),
  `:frozen` (silent while its TCP connection is up and acknowledging),
  `:down` (Erlang reported nodedown), `:departed` (its connection closed
  and it did not come back within the grace period). Every nodedown keeps
  its cause: Erlang's reason (`connection_closed`, `net_tick_timeout`,
  `disconnect`) and an attribution when libcluster disconnected it or
  `global` cut the link to prevent overlapping partitions (see
  `ClusterScope.Cluster.GlobalWatcher`: a meta trace pattern, whatever the
  logger's level).

  A member cut off from here stays in the matrix for
  #{div(@forget_down_ms, 60_000)} minutes (or until it comes back), unreachable
  from here, and counts in the majority: after Erlang's tick timeout (or a
  cut by `global`) a split is still a split. A member whose connection closed
  (crash, stop, explicit or libcluster disconnect) leaves the matrix with its
  down event, so a stopped or replaced node does not hold the cluster in
  `node_down`; it stays in the topology as `:down` for `departed_grace_ms`
  (default 30 s: it may be restarting, and health says degraded meanwhile),
  then is `:departed` (a `:departed` event; health ignores it, it never
  counts in a majority) and leaves the topology `departed_retention_ms`
  (default 10 minutes) after its nodedown, with everything kept about it.
  Both are read from `ClusterScope.Config` at each nodedown. Simulated nodes
  stay as the simulator reports them.

  Subscribers (`ClusterScope.subscribe(:cluster)`) receive
  `{:cluster_scope, :cluster, event}` for `:up`, `:down`, `:departed`,
  `:suspect`, `:partition`, `:heal` and `:mode` events.

  ## Cost

  One classification per heartbeat interval (microseconds for tens of nodes,
  in Rust), one `TCP_INFO` read per connection per interval. The history
  keeps the last #{1_000} events. What is kept about a node that came and
  went is dropped with it at the end of its retention, so the state does not
  grow with churn.
  """

  use GenServer

  @sandbox_events ~w(sandbox_created sandbox_placed sandbox_node_lost
                     sandbox_restarted_elsewhere sandbox_migrated sandbox_destroyed
                     sandbox_orphan_cleaned)a

  require Logger

  alias ClusterScope.Cluster.{Causes, Events, GlobalWatcher, Heartbeat, Observation}
  alias ClusterScope.StateKeeper

  @keep :cluster_scope_keep_cluster_state

  @max_events 1_000

  @typedoc "A cluster event."
  @type event :: %{
          id: pos_integer(),
          type: :up | :down | :departed | :forgotten | :suspect | :partition | :heal | :mode,
          node: node() | nil,
          at_ms: integer(),
          cause: String.t(),
          details: map()
        }

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Subscribes `pid` to cluster events. Idempotent."
  @spec subscribe(pid()) :: :ok
  def subscribe(pid \\ self()), do: GenServer.call(__MODULE__, {:subscribe, pid})

  @doc "Removes a subscription."
  @spec unsubscribe(pid()) :: :ok
  def unsubscribe(pid \\ self()), do: GenServer.call(__MODULE__, {:unsubscribe, pid})

  @doc "The current topology: nodes, statuses, matrix and classification."
  @spec topology() :: map()
  def topology, do: GenServer.call(__MODULE__, :topology)

  @doc """
  Forgets a node that is gone for good (decommissioned, replaced): it leaves
  the topology and the matrix at once instead of
  #{div(@forget_down_ms, 60_000)} minutes after it went silent (or at the end
  of its retention when its connection closed), and its cut pairs can no
  longer heal. `{:error, :connected}` while it is connected; a
  later connection brings it back as new.
  """
  @spec forget(node()) :: :ok | {:error, :connected}
  def forget(node) when is_atom(node), do: GenServer.call(__MODULE__, {:forget, node})

  @doc "Events with an id greater than `since` (oldest first), at most `limit`."
  @spec events(non_neg_integer(), pos_integer()) :: [event()]
  def events(since \\ 0, limit \\ @max_events),
    do: GenServer.call(__MODULE__, {:events, since, limit})

  @doc """
  Switches the source of the matrix for a mode change (used by
  `ClusterScope.Mode`): real heartbeats, or the simulator. Subscribers and
  the event history are kept; the classification starts afresh.
  """
  @spec set_mode(atom(), atom()) :: :ok
  def set_mode(from, to), do: GenServer.call(__MODULE__, {:mode, from, to})

  @doc false
  # libcluster's events, forwarded by ClusterScope.Cluster.Libcluster (which
  # attaches to :telemetry once it runs): libcluster's failed connects and
  # its own disconnects are causes the monitor_nodes messages do not give.
  def handle_libcluster([:libcluster, action, result], _measurements, metadata, _config) do
    GenServer.cast(__MODULE__, {:libcluster, action, result, metadata})
  catch
    _, _ -> :ok
  end

  @doc false
  # Called by the logger handler that watches `global`'s reports (the
  # fallback of the meta trace pattern, see GlobalWatcher).
  def global_disconnect(from, to), do: GenServer.cast(__MODULE__, {:global_disconnect, from, to})

  @doc """
  Adds a sandbox event (`ClusterScope.Sandbox.Manager`) to the cluster
  events: `:sandbox_created`, `:sandbox_placed`, `:sandbox_node_lost`,
  `:sandbox_restarted_elsewhere`, `:sandbox_migrated`, `:sandbox_destroyed`,
  `:sandbox_orphan_cleaned`. A cast; other types are ignored.
  """
  @spec sandbox_event(atom(), node() | nil, String.t(), map()) :: :ok
  def sandbox_event(type, node, cause, details),
    do: GenServer.cast(__MODULE__, {:sandbox_event, type, node, cause, details})

  # -- server ------------------------------------------------------------------

  @impl true
  def init(opts) do
    # terminate/2 runs at shutdown: the pattern on global goes with us.
    Process.flag(:trap_exit, true)
    :ok = :net_kernel.monitor_nodes(true, [{:node_type, :visible}, :nodedown_reason])
    :ok = GenServer.call(Heartbeat, {:set_listener, self()})
    watch_global()

    nodes =
      Map.new(Node.list(), fn n -> {n, new_node(n)} end)
      |> Map.put(node(), %{new_node(node()) | metadata: ClusterScope.Agent.metadata()})

    # The event history, the subscribers and the mode survive a crash of
    # this server (ClusterScope.StateKeeper); the rest is rebuilt from the
    # cluster within a few heartbeat intervals.
    {_, keep} = StateKeeper.claim(@keep, [:set, :protected, :named_table])

    kept = fn key, default ->
      with [{_, v}] <- :ets.lookup(keep, key), do: v, else: (_ -> default)
    end

    events =
      Events.restore(for({{:event, _}, e} <- :ets.tab2list(keep), do: e), kept.(:next_id, 1))

    subscribers =
      :subscribers
      |> kept.([])
      |> Enum.filter(&Process.alive?/1)
      |> Map.new(&{&1, Process.monitor(&1)})

    {:ok,
     %{
       keep: keep,
       nodes: nodes,
       events: events,
       subscribers: subscribers,
       views: %{},
       classification: nil,
       observation: nil,
       observation_key: nil,
       global_cuts: %{},
       members: MapSet.new(),
       cut_pairs: MapSet.new(),
       delayed: %{},
       libcluster_cuts: %{},
       libcluster_failing: %{},
       departing: %{},
       mode: kept.(:mode, :multi_node),
       quorum: Keyword.get(opts, :quorum),
       interval: Keyword.get(opts, :interval_ms, 100)
     }}
  end

  @impl true
  def handle_call({:subscribe, pid}, _from, state) do
    if Map.has_key?(state.subscribers, pid) do
      {:reply, :ok, state}
    else
      {:reply, :ok, keep_subscribers(put_in(state.subscribers[pid], Process.monitor(pid)))}
    end
  end

  def handle_call({:unsubscribe, pid}, _from, state) do
    {ref, subscribers} = Map.pop(state.subscribers, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    {:reply, :ok, keep_subscribers(%{state | subscribers: subscribers})}
  end

  def handle_call(:topology, _from, state), do: {:reply, build_topology(state), state}

  def handle_call({:forget, node}, _from, state) do
    if node in Node.list() or node == node() do
      {:reply, {:error, :connected}, state}
    else
      # Said in the history (when it was known), so a replay of the events
      # (the dashboard's timeline) drops it too.
      known? = Map.has_key?(state.nodes, node)
      state = drop_node(state, node)

      state =
        if known?,
          do: emit(state, :forgotten, node, "forgotten: dropped from the cluster's picture", %{}),
          else: state

      {:reply, :ok, state}
    end
  end

  def handle_call({:mode, from, to}, _from, state) do
    # Virtual nodes belong to the simulation: they leave with it.
    nodes =
      if to == :simulated,
        do: state.nodes,
        else: Map.reject(state.nodes, fn {_, n} -> n.simulated end)

    :ets.insert(state.keep, {:mode, to})

    state = %{
      state
      | mode: to,
        nodes: nodes,
        classification: nil,
        observation: nil,
        observation_key: nil,
        cut_pairs: MapSet.new()
    }

    {:reply, :ok,
     emit(state, :mode, nil, "mode changed from #{from} to #{to}", %{from: from, to: to})}
  end

  def handle_call({:events, since, limit}, _from, state),
    do: {:reply, Events.since(state.events, since, limit), state}

  @impl true
  def handle_cast({:libcluster, :disconnect_node, :ok, %{node: node} = meta}, state) do
    # libcluster disconnected it on purpose (left its topology).
    at = System.monotonic_time(:millisecond)
    {:noreply, put_in(state.libcluster_cuts[node], {at, meta[:topology]})}
  end

  def handle_cast({:libcluster, :connect_node, :error, %{node: node} = meta}, state) do
    cause =
      "libcluster could not connect (#{inspect(meta[:reason])}, topology #{inspect(meta[:topology])})"

    details = %{reason: meta[:reason], topology: meta[:topology], attribution: :libcluster}

    # Repeated failures are one event until the node is seen again.
    if Map.get(state.libcluster_failing, node) do
      {:noreply, state}
    else
      state = put_in(state.libcluster_failing[node], true)
      {:noreply, emit(state, :suspect, node, cause, Map.put(details, :status, :unreachable))}
    end
  end

  def handle_cast({:libcluster, :connect_node, :ok, %{node: node}}, state) do
    {:noreply, %{state | libcluster_failing: Map.delete(state.libcluster_failing, node)}}
  end

  def handle_cast({:libcluster, _, _, _}, state), do: {:noreply, state}

  def handle_cast({:sandbox_event, type, node, cause, details}, state)
      when type in @sandbox_events,
      do: {:noreply, emit(state, type, node, cause, details)}

  def handle_cast({:sandbox_event, _, _, _, _}, state), do: {:noreply, state}

  def handle_cast({:global_disconnect, from, to}, state) do
    other = if from == node(), do: to, else: from
    {:noreply, put_in(state.global_cuts[other], System.monotonic_time(:millisecond))}
  end

  def handle_cast({:metadata, node, metadata}, state) do
    case state.nodes do
      %{^node => info} -> {:noreply, put_in(state.nodes[node], %{info | metadata: metadata})}
      _ -> {:noreply, state}
    end
  end

  @impl true
  def handle_info({:nodeup, node, _info}, state) do
    # A nodedown still waiting for its cause happened before this nodeup:
    # settle it first, or it would land after the reconnection and leave a
    # connected node marked down.
    state =
      case Map.pop(state.delayed, node) do
        {nil, _} ->
          state

        {{_token, timer, info}, delayed} ->
          Process.cancel_timer(timer)
          record_down(%{state | delayed: delayed}, node, info)
      end

    # Asking a node that is already gone would reconnect to it.
    if node in Node.list(), do: fetch_metadata(node)
    info = %{new_node(node) | status: :up}
    # A cut reported before this reconnection is history: it must not be
    # the cause of a later nodedown.
    state = %{put_in(state.nodes[node], info) | global_cuts: Map.delete(state.global_cuts, node)}
    state = cancel_departure(state, node)
    {:noreply, emit(state, :up, node, "connected", %{})}
  end

  # `global` logs why it disconnects around the moment it does: give its
  # report 100 ms to arrive before the cause of a `disconnect` is decided.
  def handle_info({:nodedown, node, info}, state) when not is_map_key(state.delayed, node) do
    if Keyword.get(info, :nodedown_reason) == :disconnect do
      token = make_ref()
      timer = Process.send_after(self(), {:nodedown_attributed, node, token}, 100)
      {:noreply, put_in(state.delayed[node], {token, timer, info})}
    else
      {:noreply, record_down(state, node, info)}
    end
  end

  def handle_info({:nodedown, _node, _info}, state), do: {:noreply, state}

  def handle_info({:nodedown_attributed, node, token}, state) do
    # Another token (or none) when a nodeup settled this one first and its
    # timer had already fired.
    case state.delayed do
      %{^node => {^token, _timer, info}} ->
        {:noreply, record_down(%{state | delayed: Map.delete(state.delayed, node)}, node, info)}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:heartbeat_views, views, phis, now}, %{mode: mode} = state)
      when mode != :simulated do
    agents = Heartbeat.agent_nodes()
    connected = Node.list()
    state = remember_members(%{state | views: views}, agents)
    key = Observation.key(state, agents, connected, now)

    # Nothing the matrix is made of moved (and no link from here is in
    # doubt, where the kernel's loss counters could): the O(N^2) matrix is
    # not rebuilt, and the classification stands.
    if key == state.observation_key and not Observation.misses_someone?(state.observation) do
      {:noreply, state}
    else
      obs = Observation.build(state, agents, connected, now)
      {:noreply, %{classify(state, obs, phis) | observation_key: key}}
    end
  end

  def handle_info({:heartbeat_views, _views, _phis, _now}, state), do: {:noreply, state}

  # The simulator speaks the same language as the real cluster.
  def handle_info({:sim_nodeup, node}, %{mode: :simulated} = state) do
    info = %{new_node(node) | simulated: true, metadata: %{simulated: true}}

    {:noreply,
     state |> put_in([:nodes, node], info) |> emit(:up, node, "connected", %{simulated: true})}
  end

  def handle_info({:sim_nodedown, node, reason}, %{mode: :simulated} = state) do
    {:noreply, record_down(state, node, nodedown_reason: reason)}
  end

  def handle_info({:sim_views, observation}, %{mode: :simulated} = state) do
    {:noreply, classify(state, observation, %{})}
  end

  def handle_info({:DOWN, _ref, :process, pid, _}, state) do
    {:noreply, keep_subscribers(%{state | subscribers: Map.delete(state.subscribers, pid)})}
  end

  def handle_info({:departure, node, token}, state) do
    {:noreply, departure(state, node, token)}
  end

  def handle_info(:global_watch, state) do
    watch_global()
    {:noreply, state}
  end

  # This process is the meta tracer of global's partition-prevention cuts.
  def handle_info(message, state)
      when is_tuple(message) and tuple_size(message) in [4, 5] and
             elem(message, 0) in [:trace, :trace_ts] do
    case GlobalWatcher.cut(message) do
      {:ok, node} ->
        {:noreply, put_in(state.global_cuts[node], System.monotonic_time(:millisecond))}

      :ignore ->
        {:noreply, state}
    end
  end

  def handle_info(msg, state) do
    StateKeeper.handle_heir(msg, state.keep)
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, _state) do
    GlobalWatcher.unwatch(self())
  end

  defp record_down(state, node, info) do
    reason = Keyword.get(info, :nodedown_reason, :unknown)

    {cause, attribution} =
      Causes.cause(
        node,
        reason,
        state.global_cuts,
        state.libcluster_cuts,
        System.monotonic_time(:millisecond)
      )

    now = System.system_time(:millisecond)

    info = %{
      Map.get(state.nodes, node, new_node(node))
      | status: :down,
        down_reason: reason,
        down_cause: cause,
        down_attribution: attribution,
        since_ms: now
    }

    nodes = Map.put(state.nodes, node, info)

    state = %{
      state
      | nodes: nodes,
        global_cuts: Map.delete(state.global_cuts, node),
        libcluster_cuts: Map.delete(state.libcluster_cuts, node)
    }

    # Gone (closed): departed after the grace period, forgotten after the
    # retention. Cut off (tick timeout, global): kept, see @forget_down_ms.
    state =
      if Causes.closed?(info) and not info.simulated,
        do: schedule_departure(state, node),
        else: cancel_departure(state, node)

    emit(state, :down, node, cause, %{reason: reason, attribution: attribution})
  end

  # -- departures --------------------------------------------------------------

  # One timer per node whose connection closed: at the grace period it is
  # departed, at the retention (both counted from its nodedown) it is
  # dropped. The token ignores a timer that a nodeup or a new nodedown
  # replaced.
  defp schedule_departure(state, node) do
    state = cancel_departure(state, node)
    grace = ClusterScope.Config.get(:departed_grace_ms)
    retention = ClusterScope.Config.get(:departed_retention_ms)
    token = make_ref()
    timer = Process.send_after(self(), {:departure, node, token}, min(grace, retention))

    departure = %{
      token: token,
      timer: timer,
      down_at: System.monotonic_time(:millisecond),
      grace: grace,
      retention: retention
    }

    put_in(state.departing[node], departure)
  end

  defp cancel_departure(state, node) do
    case Map.pop(state.departing, node) do
      {nil, _} ->
        state

      {%{timer: timer}, departing} ->
        Process.cancel_timer(timer)
        %{state | departing: departing}
    end
  end

  defp departure(state, node, token) do
    with %{^node => %{token: ^token} = d} <- state.departing,
         %{status: status} = info when status in [:down, :departed] <- state.nodes[node],
         true <- Causes.closed?(info) do
      elapsed = System.monotonic_time(:millisecond) - d.down_at

      if elapsed >= d.retention or status == :departed do
        drop_node(state, node)
      else
        timer = Process.send_after(self(), {:departure, node, token}, d.retention - elapsed)

        state
        |> put_in([:departing, node], %{d | timer: timer})
        |> put_in([:nodes, node], %{
          info
          | status: :departed,
            since_ms: System.system_time(:millisecond)
        })
        |> emit(
          :departed,
          node,
          "departed: its connection closed #{d.grace} ms ago and it did not come back",
          %{reason: info.down_reason, leaves_in_ms: d.retention - elapsed}
        )
      end
    else
      _ -> %{state | departing: Map.delete(state.departing, node)}
    end
  end

  # Everything kept about a node, for a node gone for good.
  defp drop_node(state, node) do
    name = Atom.to_string(node)
    state = cancel_departure(state, node)

    %{
      state
      | nodes: Map.delete(state.nodes, node),
        members: MapSet.delete(state.members, node),
        views: Map.delete(state.views, node),
        global_cuts: Map.delete(state.global_cuts, node),
        libcluster_cuts: Map.delete(state.libcluster_cuts, node),
        libcluster_failing: Map.delete(state.libcluster_failing, node),
        cut_pairs: MapSet.reject(state.cut_pairs, fn {a, b} -> a == name or b == name end)
    }
  end

  defp watch_global do
    GlobalWatcher.watch(self())
    Process.send_after(self(), :global_watch, GlobalWatcher.check_interval_ms())
  end

  # -- classification ----------------------------------------------------------

  # The same matrix as last time classifies the same: skip the work (and the
  # events, which only follow changes).
  defp classify(%{observation: previous} = state, observation, _phis)
       when previous != nil and previous.reach == observation.reach and
              previous.nodes == observation.nodes and previous.down == observation.down and
              previous.connected == observation.connected and
              previous.net_loss == observation.net_loss,
       do: state

  defp classify(state, observation, phis) do
    case Observation.classify(observation) do
      {:ok, classification} ->
        state
        |> note_suspicions(observation, classification, phis)
        |> note_partition(observation, classification)
        |> note_heals(observation)
        |> Map.merge(%{classification: classification, observation: observation})

      _ ->
        state
    end
  end

  # Nodes whose agent has been seen, kept after they go down (see
  # @forget_down_ms).
  defp remember_members(state, agents) do
    cutoff = System.system_time(:millisecond) - @forget_down_ms

    members =
      state.members
      |> MapSet.union(MapSet.new(agents))
      |> MapSet.filter(fn n ->
        case Map.get(state.nodes, n) do
          %{status: :down, since_ms: since} -> since >= cutoff
          _ -> true
        end
      end)
      |> cap(@max_members)

    %{state | members: members}
  end

  @doc false
  # The matrix as the Rust classifier takes it (see Cluster.Observation).
  def observation(state, agents, now), do: Observation.build(state, agents, Node.list(), now)

  defp note_suspicions(state, observation, classification, _phis) do
    own = Enum.at(observation.reach, observation.self_index)

    suspected =
      for {n, :unreachable} <- Enum.zip(observation.node_atoms, own), into: MapSet.new(), do: n

    frozen = MapSet.new(classification.frozen, &Enum.at(observation.node_atoms, &1))
    unreachable = Observation.unreachable_from_self(observation, classification)

    Enum.reduce(observation.node_atoms, state, fn n, state ->
      info = Map.get(state.nodes, n, new_node(n))

      status =
        cond do
          n == node() -> :up
          info.status in [:down, :departed] -> info.status
          MapSet.member?(frozen, n) -> :frozen
          MapSet.member?(unreachable, n) -> :unreachable
          MapSet.member?(suspected, n) -> :suspected
          true -> :up
        end

      cond do
        status == info.status ->
          state

        # A first suspicion, or a sharper one (suspected -> frozen).
        status in [:suspected, :frozen, :unreachable] and info.status not in [:down, :departed] ->
          state
          |> put_in([:nodes, n], %{
            info
            | status: status,
              since_ms: System.system_time(:millisecond)
          })
          |> emit(:suspect, n, Causes.suspect_cause(status), %{status: status})

        true ->
          put_in(state.nodes[n], %{
            info
            | status: status,
              since_ms: System.system_time(:millisecond)
          })
      end
    end)
  end

  defp note_partition(state, observation, classification) do
    previous = state.classification && state.classification.status

    if classification.status != previous and classification.status != :healthy do
      summary = Causes.describe(observation, classification)
      emit(state, :partition, nil, summary.description, summary)
    else
      state
    end
  end

  # A pair cut at any time is remembered until both of its nodes are seen
  # reaching each other again, even across a nodedown and a reconnection.
  defp note_heals(state, observation) do
    current = Observation.cut_pairs(observation)
    present = MapSet.new(observation.nodes)

    healed =
      for {a, b} = pair <- state.cut_pairs,
          not MapSet.member?(current, pair),
          MapSet.member?(present, a) and MapSet.member?(present, b),
          Observation.reachable?(observation, a, b),
          do: pair

    # Pairs of nodes no longer known (forgotten members) can never heal.
    known = MapSet.union(present, MapSet.new(state.members, &Atom.to_string/1))

    cut_pairs =
      state.cut_pairs
      |> MapSet.difference(MapSet.new(healed))
      |> MapSet.union(current)
      |> MapSet.filter(fn {a, b} -> MapSet.member?(known, a) and MapSet.member?(known, b) end)
      |> cap(10_000)

    state = %{state | cut_pairs: cut_pairs}

    case healed do
      [] ->
        state

      pairs ->
        pairs = Enum.map(pairs, &Tuple.to_list/1)

        emit(state, :heal, nil, "reachability restored for #{length(pairs)} pair(s)", %{
          pairs: pairs
        })
    end
  end

  defp cap(set, max) do
    if MapSet.size(set) > max, do: set |> Enum.take(max) |> MapSet.new(), else: set
  end

  @doc false
  # A JSON-ready description of a classification, with node names.
  defdelegate describe(observation, classification), to: Causes

  @doc """
  True when a described classification has this node outside the majority
  of a split (minority or tie), alone or with other problems (`:mixed`).
  """
  @spec split_here?(map()) :: boolean()
  defdelegate split_here?(classification), to: Causes

  # -- topology ----------------------------------------------------------------

  defp build_topology(state) do
    state = refresh_self(state)

    classification =
      case {state.observation, state.classification} do
        {nil, _} -> nil
        {obs, c} -> describe(obs, c)
      end

    %{
      node: node(),
      nodes:
        state.nodes
        |> Map.values()
        |> Enum.sort_by(& &1.node)
        |> Enum.map(&Map.drop(&1, [])),
      matrix: Observation.matrix(state.observation),
      classification: classification || %{status: :healthy, description: "no data yet"},
      agents:
        if(state.mode == :simulated, do: Map.keys(state.nodes), else: Heartbeat.agent_nodes()),
      mode: state.mode
    }
  end

  # -- events ------------------------------------------------------------------

  defp emit(state, type, node, cause, details) do
    events = Events.emit(state.events, Map.keys(state.subscribers), type, node, cause, details)
    # One row per event in the kept table, the oldest past the bound removed.
    event = Events.last(events)
    :ets.insert(state.keep, [{{:event, event.id}, event}, {:next_id, events.next_id}])
    :ets.delete(state.keep, {:event, event.id - Events.max_events()})
    %{state | events: events}
  end

  defp keep_subscribers(state) do
    :ets.insert(state.keep, {:subscribers, Map.keys(state.subscribers)})
    state
  end

  # always under its current name.
  defp refresh_self(state) do
    nodes =
      state.nodes
      |> Map.delete(:nonode@nohost)
      |> Map.put_new_lazy(node(), fn ->
        %{new_node(node()) | metadata: ClusterScope.Agent.metadata()}
      end)

    %{state | nodes: nodes}
  end

  defp new_node(node) do
    %{
      node: node,
      status: :up,
      since_ms: System.system_time(:millisecond),
      metadata: %{},
      down_reason: nil,
      down_cause: nil,
      down_attribution: nil,
      simulated: false
    }
  end

  defp fetch_metadata(node) do
    parent = self()

    Task.start(fn ->
      case ClusterScope.Fanout.call(node, ClusterScope.Agent, :metadata, [], 2_000) do
        {:ok, metadata} -> GenServer.cast(parent, {:metadata, node, metadata})
        _ -> :ok
      end
    end)
  end
end
