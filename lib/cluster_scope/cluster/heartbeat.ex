defmodule ClusterScope.Cluster.Heartbeat do
  @moduledoc """
  Heartbeats between the ClusterScope agents of a cluster, and what each node
  hears of the others.

  Every node running ClusterScope joins the `:agents` group of the `:pg` scope
  `:cluster_scope`. Every `heartbeat_interval_ms` (default 200 ms) this
  process sends one small message to the heartbeat process of every other
  agent, with `:noconnect` and `:nosuspend` (a heartbeat never opens a
  connection and never blocks on a busy one: it is dropped instead). Each
  arrival is recorded in the Rust phi-accrual detectors
  (`ClusterScope.Native.phi_heartbeat/3`, O(1)).

  Each heartbeat also carries this node's *view* (whom it hears, from its own
  detectors) and the freshest views it has of the others, with their
  versions. So every node learns what every node it can still reach,
  directly or through another node, hears: the connection matrix that
  `ClusterScope.Cluster.State` classifies.

  ## Cost

  With N agents: N - 1 messages sent and received per interval, each a few
  hundred bytes (views are gossiped for at most #{64} nodes; beyond that only
  a node's own view travels). At 200 ms and 5 nodes that is 20 messages a
  second in each direction. Measured (bench/partition_detection.exs): the
  work itself is about 12,000 reductions a second; most of the cost is
  scheduler wake-ups, which is why the default is 200 ms and not 100 ms
  (100 ms measured 0.4-0.9 % of a core per node, 200 ms 0.2-0.4 %).

  The detector: acceptable pause 200 ms and a standard deviation floor of
  50 ms, so a silent peer crosses phi 8 after about 0.7 s of silence at the
  default interval, while scheduling jitter of a loaded 2-core machine stayed
  under phi 0.1 in a 2-minute soak.
  """

  use GenServer

  alias ClusterScope.Native

  @scope :cluster_scope
  @group :agents
  @max_gossip 64
  # A view nobody refreshed for this long belongs to a node that is gone
  # (a relay can hand over a node's last view just after its nodedown):
  # dropped, so the views do not grow with churn.
  @forget_view_ms 60_000

  @typedoc "What one node hears of the others."
  @type view :: %{node() => :reachable | :unreachable}

  @typedoc "The views a node knows: its own and the freshest of the others."
  @type views :: %{node() => %{version: non_neg_integer(), at_ms: integer(), view: view()}}

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The `:pg` scope ClusterScope agents join."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc "The nodes whose ClusterScope agent is known here (this one included)."
  @spec agent_nodes() :: [node()]
  def agent_nodes do
    @scope |> :pg.get_members(@group) |> Enum.map(&node/1) |> Enum.uniq()
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
  def stale_after_ms(interval), do: 2 * interval + 100

  @impl true
  def init(opts) do
    interval = Keyword.fetch!(opts, :interval_ms)
    threshold = Keyword.fetch!(opts, :phi_threshold)
    :ok = :pg.join(@scope, @group, self())

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
       version: System.system_time(:millisecond) * 1_000,
       views: %{},
       last_seen: %{},
       reset_after_ms: 2 * (interval + Keyword.get(opts, :acceptable_pause_ms, 200.0)),
       listener: Keyword.get(opts, :listener)
     }}
  end

  @impl true
  def handle_info(:tick, state) do
    schedule(state.interval)
    now = now_ms()
    peers = agent_pids() |> Enum.reject(&(node(&1) == node()))
    phis = phis(state.detectors, now)

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

    version = state.version + 1

    views =
      state.views
      |> prune(now, @forget_view_ms)
      |> Map.put(node(), %{version: version, at_ms: now, view: view})

    gossip = gossip(views, now, stale_after_ms(state.interval))
    message = {:cs_heartbeat, node(), version, gossip}

    for pid <- peers, do: :erlang.send(pid, message, [:noconnect, :nosuspend])

    if state.listener, do: send(state.listener, {:heartbeat_views, views, phis, now})
    {:noreply, %{state | version: version, views: views}}
  end

  def handle_info({:cs_heartbeat, from, _version, gossip}, state) when is_atom(from) do
    now = now_ms()

    if state.detectors do
      peer = Atom.to_string(from)

      # A heartbeat after a long silence (or the first one) starts a fresh
      # history: one multi-second interval in the window would blunt the
      # detector for the next `window` beats.
      case Map.fetch(state.last_seen, from) do
        {:ok, last} when now - last <= state.reset_after_ms -> :ok
        _ -> Native.phi_remove(state.detectors, peer)
      end

      Native.phi_heartbeat(state.detectors, peer, now * 1.0)
    end

    {:noreply,
     %{
       state
       | views: merge(state.views, gossip, now),
         last_seen: Map.put(state.last_seen, from, now)
     }}
  end

  # monitor_nodes with options sends {:nodedown, node, info}.
  def handle_info({:nodedown, node, _info}, state) do
    # The connection is gone: its detector starts afresh when it comes back.
    if state.detectors, do: Native.phi_remove(state.detectors, Atom.to_string(node))

    {:noreply,
     %{state | views: Map.delete(state.views, node), last_seen: Map.delete(state.last_seen, node)}}
  end

  def handle_info({:nodeup, _node, _info}, state), do: {:noreply, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call(:snapshot, _from, state) do
    now = now_ms()

    reply = %{
      phis: phis(state.detectors, now),
      views: state.views,
      interval_ms: state.interval,
      threshold: state.threshold,
      now_ms: now
    }

    {:reply, reply, state}
  end

  def handle_call({:set_listener, pid}, _from, state), do: {:reply, :ok, %{state | listener: pid}}

  defp agent_pids do
    :pg.get_members(@scope, @group)
  catch
    _, _ -> []
  end

  defp phis(nil, _now), do: %{}

  defp phis(detectors, now) do
    case Native.phi_all(detectors, now * 1.0) do
      list when is_list(list) ->
        # Peer names come from nodes we are connected to: their atoms exist.
        for %{peer: peer} = p <- list, into: %{}, do: {String.to_existing_atom(peer), p}

      _ ->
        %{}
    end
  end

  # Views travel with their version (the owner's counter) only; the receiver
  # stamps its own arrival time. Only views that are fresh here are relayed
  # (the same staleness as `ClusterScope.Cluster.State`'s): a receiver that
  # has forgotten a node (nodedown) would otherwise take its last words,
  # stamped with a new arrival time, for current.
  defp gossip(views, now, stale_ms) do
    views
    |> Enum.filter(fn {_node, v} -> now - v.at_ms <= stale_ms end)
    |> Enum.sort_by(fn {_node, v} -> -v.at_ms end)
    |> Enum.take(@max_gossip)
    |> Map.new(fn {node, v} -> {node, {v.version, v.view}} end)
  end

  defp merge(views, gossip, now) when is_map(gossip) do
    Enum.reduce(gossip, views, fn
      {node, {version, view}}, acc when node != node() and is_integer(version) and is_map(view) ->
        case Map.fetch(acc, node) do
          {:ok, %{version: known}} when known >= version -> acc
          _ -> Map.put(acc, node, %{version: version, at_ms: now, view: view})
        end

      _, acc ->
        acc
    end)
  end

  defp merge(views, _gossip, _now), do: views

  @doc false
  # The views refreshed within `max_age_ms` of `now`, and this node's own.
  @spec prune(views(), integer(), non_neg_integer()) :: views()
  def prune(views, now, max_age_ms) do
    Map.filter(views, fn {node, %{at_ms: at}} -> node == node() or now - at <= max_age_ms end)
  end

  defp schedule(interval), do: Process.send_after(self(), :tick, interval)

  defp now_ms, do: System.monotonic_time(:millisecond)
end
