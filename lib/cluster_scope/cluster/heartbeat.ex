defmodule ClusterScope.Cluster.Heartbeat do
  @moduledoc """
  Heartbeats between the ClusterScope agents of a cluster, and what each node
  hears of the others.

  Every node running ClusterScope joins the `:agents` group of the `:pg` scope
  `:cluster_scope`. Every `heartbeat_interval_ms` (default 300 ms) this
  process sends one small message to the heartbeat process of every other
  agent, with `:noconnect` and `:nosuspend` (a heartbeat never opens a
  connection and never blocks on a busy one: it is dropped instead). Each
  arrival is recorded in the Rust phi-accrual detectors
  (`ClusterScope.Native.phi_heartbeat/3`, O(1)).

  What each node hears of the others travels with the beats, kept current
  by `ClusterScope.Cluster.Gossip` (the pure part): a beat carries this
  node's beat counter, the version of its view, the view itself only in the
  interval it changed, and a digest of which views are fresh here. Views are
  pulled on a mismatch, and a node cut from another asks the others for it
  (`wants`), so every node learns what every node it can still reach,
  directly or through another node, hears: the connection matrix that
  `ClusterScope.Cluster.State` classifies.

  ## Cost

  With N agents: N - 1 messages sent and received per interval, each of a
  size that does not depend on N while nothing changes (92 bytes on the
  wire, protocol pair included). `bench/heartbeat_scale.exs` measured,
  idle, per node at 4, 12 and 24 real nodes (24 VMs on 2 shared cores) with
  a 200 ms interval: 1.5, 5.1 and 10.7 kB/s sent (the old gossip: 2.9, 45
  and 358 kB/s); the cluster processes and the distribution ports to the
  other peers running 0.17, 0.30 and 0.44 % of a core (traced CPU time of
  each run); the whole VM, running minus suspended, 0.28, 0.52 and 0.71 %
  (old: 0.25, 1.24, 2.75). The cost is per message: waking a scheduler,
  reading and writing the sockets, handling the beat (peers without
  scheduler busy-wait, `+sbwt none`, measured 0.68 % instead of 0.71 %).
  Hence the default interval of 300 ms: at 24 nodes 7.1 kB/s, 0.31 % per
  process and 0.50 % for the whole VM, while detection stays at p50
  0.75-0.8 s in every scenario of the partition benchmark (the detector's
  acceptable pause and deviation floor set most of it, not the interval).
  The heartbeat process is scheduled about 50 times a second at 24 nodes
  (a burst already queued is handled in one run, and a complete burst
  tells the state without a timer). The gossip path of one node among
  1,000 takes about 1.1 ms per interval. A change costs one view (N
  entries) per receiver, once. `phi_all` runs on a dirty scheduler above
  2,000 peers, where it could pass 1 ms (the NIF answers `:use_dirty`).

  The detector: acceptable pause 200 ms and a standard deviation floor of
  50 ms, so a silent peer crosses phi 8 after about 0.8 s of silence at the
  default interval (0.7 s at 200 ms; a fault comes half an interval after
  the last beat on average, hence detection in 0.75-0.8 s at either), while scheduling jitter of a loaded 2-core machine stayed
  under phi 0.1 in a 20 s soak under load (the partition benchmark).
  """

  use GenServer

  alias ClusterScope.PgMembership
  alias ClusterScope.Cluster.Gossip
  alias ClusterScope.{Native, Protocol}

  require Logger

  @scope :cluster_scope
  @group :agents

  # Queued beats handled in one run after the first, at most: calls and
  # system messages behind a long burst (thousands of peers) wait for no
  # more than that.
  @drain_max 256

  @typedoc "What one node hears of the others."
  @type view :: Gossip.view()

  @typedoc "The views a node knows: its own and the others' (see `ClusterScope.Cluster.Gossip`)."
  @type views :: Gossip.views()

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The `:pg` scope ClusterScope agents join."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc """
  The nodes whose ClusterScope agent is known here (this one included) and
  speaks a protocol version this node can talk with: an agent of a
  mismatched version (`ClusterScope.Protocol`) is left out, like a node
  without ClusterScope (its beats are read for their version only).
  """
  @spec agent_nodes() :: [node()]
  def agent_nodes do
    @scope
    |> :pg.get_members(@group)
    |> Enum.map(&node/1)
    |> Enum.uniq()
    |> Enum.reject(&Protocol.mismatched?/1)
  catch
    _, _ -> [node()]
  end

  @doc """
  The phi of every peer and the views known here:
  `%{phis: %{node => map}, views: views, interval_ms: ms, threshold: phi}`.
  """
  @spec snapshot(timeout()) :: map()
  def snapshot(timeout \\ 1_000), do: GenServer.call(__MODULE__, :snapshot, timeout)

  @doc false
  # A view not refreshed for this long is stale: `ClusterScope.Cluster.State`
  # reads its row as unknown and this process no longer relays it.
  @spec stale_after_ms(pos_integer()) :: pos_integer()
  def stale_after_ms(interval), do: Gossip.stale_after_ms(interval)

  @doc false
  # The views refreshed within `max_age_ms` of `now`, and this node's own.
  @spec prune(views(), integer(), non_neg_integer()) :: views()
  def prune(views, now, max_age_ms), do: Gossip.prune(views, node(), now, max_age_ms)

  @impl true
  def init(opts) do
    interval = Keyword.fetch!(opts, :interval_ms)
    threshold = Keyword.fetch!(opts, :phi_threshold)
    # Membership dies with the :pg scope process: joined again when it restarts.
    :ok = PgMembership.join(@scope, @group)

    detectors =
      case Native.phi_new(
             Keyword.get(opts, :window, 200),
             Keyword.get(opts, :min_std_dev_ms, 50.0),
             Keyword.get(opts, :acceptable_pause_ms, 200.0),
             interval * 1.0,
             10_000
           ) do
        {:ok, ref} -> ref
        {:error, _} -> nil
      end

    :ok = :net_kernel.monitor_nodes(true, [{:node_type, :visible}])
    schedule(interval)

    {:ok,
     %{
       detectors: detectors,
       interval: interval,
       threshold: threshold,
       # A restarted node's versions continue above its previous life's,
       # so what others still hold of that life never looks newer.
       gossip: Gossip.new(node(), interval, System.system_time(:millisecond) * 1_000),
       reset_after_ms: 2 * (interval + Keyword.get(opts, :acceptable_pause_ms, 200.0)),
       flush: nil,
       awaiting: 0,
       # The phis of the last tick, handed to the state with the views
       # (read once per tick: the views between ticks do not move them).
       phis: %{},
       listener: Keyword.get(opts, :listener),
       # features: [heartbeats: false] - no beats at all (read at start).
       beats?: Keyword.get(opts, :beats, ClusterScope.Features.enabled?(:heartbeats)),
       quiet_version: 0
     }}
  end

  @impl true
  # A node that became distributed after ClusterScope started (Node.start/2
  # at run time; `mix test` starts the application before the test helper
  # names the node) had its gossip keyed by its old name: its own view would
  # stand under `nonode@nohost` and it would see itself alone, on the
  # minority side of a split, forever. Start the gossip afresh under the new
  # name.
  def handle_info(:tick, %{gossip: %{self: self}} = state) when self != node() do
    handle_info(:tick, %{
      state
      | gossip: Gossip.new(node(), state.interval, System.system_time(:millisecond) * 1_000)
    })
  end

  # Heartbeats switched off: no traffic, no detectors. The state is given
  # what Erlang's connections say, as if every connected agent heard every
  # other: nodedowns still show, silent nodes and partitions only once
  # Erlang's tick notices them (45-75 s with the default net_ticktime).
  def handle_info(:tick, %{beats?: false} = state) do
    schedule(state.interval)
    now = now_ms()
    connected = MapSet.new([node() | Node.list()])
    agents = Enum.filter(agent_nodes(), &MapSet.member?(connected, &1))
    version = state.quiet_version + 1

    views =
      Map.new(agents, fn n ->
        view = Map.new(agents -- [n], &{&1, :reachable})
        {n, %{version: version, cv: :erlang.phash2(view), at_ms: now, view: view}}
      end)

    if state.listener, do: send(state.listener, {:heartbeat_views, views, %{}, now})
    {:noreply, %{state | quiet_version: version}}
  end

  def handle_info(:tick, state) do
    schedule(state.interval)
    now = now_ms()

    {mismatched, peers} =
      agent_pids()
      |> Enum.reject(&(node(&1) == node()))
      |> Enum.split_with(&Protocol.mismatched?(node(&1)))

    phis = phis(state.detectors, now)

    # A peer of a mismatched protocol version is not heard (only its
    # version is read) and not in this node's view: its detector goes.
    phis =
      Enum.reduce(mismatched, phis, fn pid, phis ->
        peer = node(pid)

        if Map.has_key?(phis, peer) do
          Native.phi_remove(state.detectors, Atom.to_string(peer))
          Map.delete(phis, peer)
        else
          phis
        end
      end)

    # A peer we have not heard yet counts as heard when it joins: if nothing
    # follows, its phi rises like anyone's. Without this, a peer with no
    # detector would stay "reachable" forever.
    phis =
      Enum.reduce(peers, phis, fn pid, phis ->
        peer = node(pid)

        if state.detectors && not Map.has_key?(phis, peer) do
          Native.phi_heartbeat(state.detectors, Atom.to_string(peer), now * 1.0)
          Map.put(phis, peer, %{phi: 0.0})
        else
          phis
        end
      end)

    view =
      Map.new(peers, fn pid ->
        peer = node(pid)

        case Map.fetch(phis, peer) do
          {:ok, %{phi: phi}} when phi >= state.threshold -> {peer, :unreachable}
          _ -> {peer, :reachable}
        end
      end)

    {gossip, beat} = Gossip.tick(state.gossip, view, now)

    # On the wire a beat carries the protocol version ahead of the gossip.
    # Mismatched peers get it too (and read only the version, as this node
    # reads only theirs): how two nodes learn of each other's new version
    # after an upgrade, whichever learns first. They are not awaited.
    beat = Tuple.insert_at(beat, 1, Protocol.own())
    for pid <- peers ++ mismatched, do: :erlang.send(pid, beat, [:noconnect, :nosuspend])

    # The state classifies once the beats of this tick from every node are
    # in (they arrive together; those that came before this tick count):
    # one classification of the whole change rather than one per node's
    # part of it, and no separate wake-up when the burst is complete. The
    # timer is the fallback for a burst that stays short.
    state = %{state | gossip: gossip, awaiting: state.awaiting + length(peers), phis: phis}

    if state.awaiting <= 0 do
      if state.flush, do: Process.cancel_timer(state.flush)
      handle_info(:flush_views, state)
    else
      {:noreply, flush_soon(state)}
    end
  end

  def handle_info({:cs_hb, _pv, _from, _version, _cv, _view, _wants, _digest} = beat, state) do
    # The beats of a burst that are already queued are handled in this same
    # run (one wake-up of this process for all of them), then the state is
    # told once if the burst is complete.
    state = drain(hear(beat, state, now_ms()), @drain_max)

    if state.awaiting <= 0 and state.flush != nil do
      Process.cancel_timer(state.flush)
      handle_info(:flush_views, state)
    else
      {:noreply, state}
    end
  end

  # Beats of another protocol: version 1's, and the unversioned ones of the
  # builds just before 2. Their senders are mismatched: logged once
  # (Protocol.note_peer/2), never read.
  def handle_info({:cs_heartbeat, from, _version, _gossip}, state) when is_atom(from) do
    Protocol.note_peer(from, {1, 1})
    {:noreply, state}
  end

  def handle_info({:cs_hb, from, _version, _cv, _view, _wants, _digest}, state)
      when is_atom(from) do
    Protocol.note_peer(from, {1, 1})
    {:noreply, state}
  end

  # Gossip repairs come only from compatible nodes' heartbeats: a
  # mismatched node's are not read (their format may differ).
  def handle_info({:cs_relay, from, items}, state) when is_atom(from) do
    if Protocol.mismatched?(from),
      do: {:noreply, state},
      else: {:noreply, changed(state, Gossip.relay(state.gossip, items, now_ms()))}
  end

  # After a tick, and when another node's view changed between ticks: the
  # state classifies shortly after (once for the burst of an interval's
  # beats), not at the next tick, so a fault seen by several nodes is
  # classified as a whole within the interval it shows.
  def handle_info(:flush_views, state) do
    now = now_ms()

    if state.listener,
      do:
        send(
          state.listener,
          {:heartbeat_views, state.gossip.views, state.phis, now}
        )

    # Beats heard from now on count for the next tick.
    {:noreply, %{state | flush: nil, awaiting: 0}}
  end

  def handle_info({:cs_pull, from}, state) when is_atom(from) do
    if not Protocol.mismatched?(from), do: send_all([{from, Gossip.pull_reply(state.gossip)}])
    {:noreply, state}
  end

  def handle_info({:cs_sync, from, versions}, state) when is_atom(from) do
    if not Protocol.mismatched?(from),
      do: send_all([{from, Gossip.sync_reply(state.gossip, versions, now_ms())}])

    {:noreply, state}
  end

  # monitor_nodes with options sends {:nodedown, node, info}.
  def handle_info({:nodedown, node, _info}, state) do
    # The connection is gone: its detector starts afresh when it comes back.
    if state.detectors, do: Native.phi_remove(state.detectors, Atom.to_string(node))
    {:noreply, %{state | gossip: Gossip.forget(state.gossip, node)}}
  end

  def handle_info({:nodeup, _node, _info}, state), do: {:noreply, state}

  def handle_info(other, state) do
    # The :pg scope restarted: join the agents again.
    PgMembership.handle(other, {@scope, @group})
    {:noreply, state}
  end

  @impl true
  def handle_call(:snapshot, _from, state) do
    now = now_ms()

    reply = %{
      phis: phis(state.detectors, now),
      views: state.gossip.views,
      interval_ms: state.interval,
      threshold: state.threshold,
      now_ms: now
    }

    {:reply, reply, state}
  end

  def handle_call({:set_listener, pid}, _from, state), do: {:reply, :ok, %{state | listener: pid}}

  @flush_after_ms 15

  defp drain(state, 0), do: state

  defp drain(state, left) do
    receive do
      {:cs_hb, _pv, _from, _version, _cv, _view, _wants, _digest} = beat ->
        drain(hear(beat, state, now_ms()), left - 1)
    after
      0 -> state
    end
  end

  defp hear({:cs_hb, pv, from, _version, _cv, _view, _wants, _digest} = wire, state, now)
       when is_atom(from) do
    case pv do
      {v, min} when is_integer(v) and is_integer(min) ->
        Protocol.note_peer(from, pv)
        # A beat of a version this node cannot talk with is not read (and
        # was not awaited: no beat went to its sender).
        if Protocol.speak(pv) != nil,
          do: hear_beat(Tuple.delete_at(wire, 1), state, now),
          else: state

      _ ->
        state
    end
  end

  defp hear(_beat, state, _now), do: state

  defp hear_beat({:cs_hb, from, _version, _cv, _view, _wants, _digest} = beat, state, now) do
    if state.detectors do
      # The NIF reads an atom's text itself: no binary per beat.
      # A heartbeat after a long silence (or the first one) starts a fresh
      # history: one multi-second interval in the window would blunt the
      # detector for the next `window` beats.
      case Gossip.last_direct(state.gossip, from) do
        last when is_integer(last) and now - last <= state.reset_after_ms -> :ok
        _ -> Native.phi_remove(state.detectors, from)
      end

      Native.phi_heartbeat(state.detectors, from, now * 1.0)
    end

    {gossip, out} = Gossip.beat(state.gossip, beat, now)
    send_all(out)
    changed(%{state | awaiting: state.awaiting - 1}, gossip)
  end

  defp changed(%{gossip: %{changes: c}} = state, %{changes: c} = gossip),
    do: %{state | gossip: gossip}

  defp changed(state, gossip), do: flush_soon(%{state | gossip: gossip})

  defp flush_soon(%{flush: nil} = state),
    do: %{state | flush: Process.send_after(self(), :flush_views, @flush_after_ms)}

  defp flush_soon(state), do: state

  # Answers go to the heartbeat process of the node that asked, by name, and
  # like beats never open or wait on a connection.
  defp send_all(out) do
    for {node, message} <- out,
        do: :erlang.send({__MODULE__, node}, message, [:noconnect, :nosuspend])

    :ok
  end

  defp agent_pids do
    :pg.get_members(@scope, @group)
  catch
    _, _ -> []
  end

  defp phis(nil, _now), do: %{}

  defp phis(detectors, now) do
    result =
      with :use_dirty <- Native.phi_all(detectors, now * 1.0),
           do: Native.phi_all_dirty(detectors, now * 1.0)

    case result do
      list when is_list(list) ->
        # Peer names come from nodes we are connected to: their atoms exist.
        for %{peer: peer} = p <- list, into: %{}, do: {String.to_existing_atom(peer), p}

      _ ->
        %{}
    end
  end

  # Ticks fall on multiples of the interval of the system clock, so every
  # node beats at the same moments and a node receives its N - 1 beats in
  # one burst around its own tick: one wake-up of this process and of the
  # schedulers per interval instead of N (with clocks a few ms apart, the
  # arrival intervals the detectors see are unchanged).
  defp schedule(interval) do
    delay = interval - rem(System.system_time(:millisecond), interval)
    Process.send_after(self(), :tick, delay)
  end

  defp now_ms, do: System.monotonic_time(:millisecond)
end
