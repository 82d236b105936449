defmodule ClusterScope.Sandbox.Manager do
  @moduledoc """
  The sandbox server of a node (thin): it reacts to nodes going and coming,
  keeps the tombstones of destroyed sandboxes and the recent sandbox events.
  The sandboxes themselves live in their parts
  (`ClusterScope.Sandbox.Group`), so a restart of this server loses nothing
  they hold; its tombstones are kept through a crash
  (`ClusterScope.StateKeeper`) and merged with the other nodes' managers' at
  start.

  * nodedown: for each local part whose sandbox has `restart: :survivors`
    and had processes on the lost node, the sandbox's surviving node with
    the smallest name (every survivor computes the same) places the lost
    processes on the survivors (Rust core, `spread` counting what each
    runs, or `least_loaded` for a least-loaded sandbox) and applies the new
    placement, one epoch up, on every survivor. Only a side holding more
    than half of the sandbox's nodes (or half, with the smallest name)
    acts, so a node cut off alone does not start a second copy. Epochs are
    `{counter, deciding node}`: two decisions made at once (a link `global`
    cut while another node was going) never tie, and when the sides meet
    again the higher epoch wins everywhere (below).
  * nodeup (and at start): asks the node for its tombstones and parts
    (`ClusterScope.Sandbox.Agent.sync_view/0`, through `ClusterScope.Fanout`):
    a local part of a sandbox tombstoned there is removed (`orphan cleaned`);
    a local part at an older epoch than the node's takes the node's
    placement (so processes restarted elsewhere during a split are not run
    twice); tombstones are merged. Every 10 s it does the same with one
    other node at random (anti-entropy).

  Tombstones are bounded: at most 1,000, each kept 24 h. Events: the last
  200 here (`events/0`); each also joins the cluster events of this node
  (`ClusterScope.Cluster.State.sandbox_event/4`, `cluster_events`) and is
  emitted as `[:cluster_scope, :sandbox, type]` telemetry when
  `:telemetry` runs.

  The work on a node event runs in a process of its own, so the server
  always answers; failover passes run one at a time (each reads the
  placement the previous one applied), at each nodedown, at start and
  every 10 s (processes placed on a node gone while this server was
  restarting are found then).
  """

  use GenServer
  require Logger

  alias ClusterScope.Fanout
  alias ClusterScope.Sandbox.{Agent, Group, Placement}

  @max_tombstones 1_000
  @keep :cluster_scope_keep_sandbox_manager
  @tombstone_ttl_ms 24 * 3_600_000
  @max_events 200
  @sync_delays [200, 2_000]
  @resync_ms 10_000

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Records the tombstone of sandbox `id` on this node."
  @spec tombstone(binary(), binary()) :: :ok
  def tombstone(id, name), do: GenServer.call(__MODULE__, {:tombstone, id, name})

  @doc "Whether sandbox `id` was destroyed (as far as this node knows)."
  @spec tombstoned?(binary()) :: boolean()
  def tombstoned?(id), do: Map.has_key?(tombstones(), id)

  @doc "This node's tombstones: `%{id => %{name:, at_ms:}}`."
  @spec tombstones() :: map()
  def tombstones do
    GenServer.call(__MODULE__, :tombstones)
  catch
    :exit, _ -> %{}
  end

  @doc "The last sandbox events recorded on this node, oldest first."
  @spec events() :: [map()]
  def events do
    GenServer.call(__MODULE__, :events)
  catch
    :exit, _ -> []
  end

  @doc "Records a sandbox event here (never fails)."
  @spec record(atom(), node() | nil, String.t(), map()) :: :ok
  def record(type, node, cause, details),
    do: GenServer.cast(__MODULE__, {:event, type, node, cause, details})

  # -- server ------------------------------------------------------------------------

  @impl true
  def init(_opts) do
    :ok = :net_kernel.monitor_nodes(true, node_type: :visible)
    # Tombstones survive a crash of this server (also rebuilt from the other
    # nodes below, which a cluster of one does not have).
    {_, keep} = ClusterScope.StateKeeper.claim(@keep, [:set, :protected, :named_table])

    kept =
      case :ets.lookup(keep, :tombstones) do
        [{_, tombs}] -> tombs
        [] -> %{}
      end

    state = %{
      keep: keep,
      tombstones: kept,
      events: :queue.new(),
      count: 0,
      next_id: 1,
      failover: nil,
      failover_again: false
    }

    {:ok, state, {:continue, :rebuild}}
  end

  @impl true
  def handle_continue(:rebuild, state) do
    me = self()
    Process.send_after(me, :resync, @resync_ms)
    state = failover_pass(state)

    for n <- ClusterScope.Cluster.Heartbeat.agent_nodes(), n != node() do
      Task.start(fn -> sync_with(n, me) end)
    end

    {:noreply, state}
  end

  @impl true
  def handle_call({:tombstone, id, name}, _from, state),
    do: {:reply, :ok, put_tombstone(state, id, %{name: name, at_ms: now()})}

  def handle_call(:tombstones, _from, state), do: {:reply, prune(state.tombstones), state}
  def handle_call(:events, _from, state), do: {:reply, :queue.to_list(state.events), state}

  @impl true
  def handle_cast({:event, type, node, cause, details}, state),
    do: {:noreply, event(state, type, node, cause, details)}

  def handle_cast({:merge_tombstones, tombs}, state) do
    state = Enum.reduce(tombs, state, fn {id, t}, s -> put_tombstone(s, id, t) end)
    {:noreply, state}
  end

  @impl true
  # One failover pass at a time: a nodedown during a pass asks for another
  # after it, which reads the placement the first applied (two nodes lost
  # at once must not both re-place from the same epoch).
  def handle_info({:nodedown, _lost, _info}, state), do: {:noreply, failover_pass(state)}

  def handle_info({:DOWN, ref, :process, _, _}, %{failover: ref} = state) do
    state = %{state | failover: nil}

    if state.failover_again,
      do: {:noreply, failover_pass(%{state | failover_again: false})},
      else: {:noreply, state}
  end

  def handle_info({:nodeup, n, _info}, state) do
    me = self()

    Task.start(fn ->
      Enum.each(@sync_delays, fn delay ->
        Process.sleep(delay)
        sync_with(n, me)
      end)
    end)

    {:noreply, state}
  end

  # Anti-entropy: every 10 s one other node at random, in case a nodeup's
  # syncs came while links were still settling. One call per node and
  # interval whatever the cluster's size.
  # A failover pass too: it finds processes placed on nodes gone while no
  # nodedown was seen here (this server restarting at that moment).
  def handle_info(:resync, state) do
    me = self()
    Process.send_after(me, :resync, @resync_ms)

    case ClusterScope.Cluster.Heartbeat.agent_nodes() -- [node()] do
      [] -> :ok
      others -> Task.start(fn -> sync_with(Enum.random(others), me) end)
    end

    {:noreply, failover_pass(state)}
  end

  def handle_info(other, state) do
    ClusterScope.StateKeeper.handle_heir(other, state.keep)
    {:noreply, state}
  end

  # -- failover ----------------------------------------------------------------------

  defp failover_pass(%{failover: nil} = state) do
    {_pid, ref} = spawn_monitor(&failover/0)
    %{state | failover: ref}
  end

  defp failover_pass(state), do: %{state | failover_again: true}

  @doc false
  # Runs in a process of its own at a nodedown (and every 10 s): for each
  # local part with `restart: :survivors` whose placement names nodes not
  # connected now, the coordinator (smallest survivor, on the majority
  # side) re-places their processes. A node that came back before the pass
  # is not gone.
  def failover do
    connected = MapSet.new([node() | Node.list()])

    for pid <- Agent.groups(),
        meta = safe_meta(pid),
        meta != nil,
        meta.definition.restart == :survivors do
      nodes = meta.placement |> Tuple.to_list() |> Enum.uniq()
      {survivors, gone} = Enum.split_with(nodes, &MapSet.member?(connected, &1))

      if gone != [] and survivors != [] and majority?(survivors, nodes) and
           Enum.min(survivors) == node() do
        restart_elsewhere(meta, gone, survivors)
      end
    end

    :ok
  end

  # A side restarts the lost processes only when it holds more than half of
  # the sandbox's nodes, or exactly half including the smallest name: of
  # two sides of a split, one at most acts.
  defp majority?(survivors, nodes) do
    2 * length(survivors) > length(nodes) or
      (2 * length(survivors) == length(nodes) and Enum.min(nodes) in survivors)
  end

  defp restart_elsewhere(meta, gone, survivors) do
    d = meta.definition
    old = meta.placement
    moving = for i <- 0..(tuple_size(old) - 1)//1, elem(old, i) in gone, do: i
    current = Enum.frequencies(Tuple.to_list(old))
    strategy = if d.strategy == :least_loaded, do: :least_loaded, else: :spread

    {loads, _} = if strategy == :least_loaded, do: Placement.loads(survivors), else: {%{}, []}

    figures = Enum.map(survivors, &{&1, Map.get(loads, &1, 0.0), Map.get(current, &1, 0)})

    for n <- gone do
      record(
        :sandbox_node_lost,
        n,
        "#{n} lost with #{Enum.count(moving, &(elem(old, &1) == n))} processes of sandbox #{d.name}",
        %{id: d.id}
      )
    end

    with {:ok, dest} <- Placement.place(strategy, length(moving), figures) do
      new =
        moving
        |> Enum.zip(dest)
        |> Enum.reduce(old, fn {slot, n}, acc -> put_elem(acc, slot, n) end)

      {_oks, errors} =
        ClusterScope.Sandbox.apply_on(survivors, d, new, Group.next_epoch(meta.epoch))

      record(
        :sandbox_restarted_elsewhere,
        hd(gone),
        "#{length(moving)} processes of sandbox #{d.name} restarted on " <>
          Enum.join(survivors, ", "),
        %{
          id: d.id,
          lost: gone,
          nodes: ClusterScope.Sandbox.counts(new),
          errors: Map.new(errors)
        }
      )
    else
      {:error, reason} ->
        Logger.warning(
          "ClusterScope sandbox #{d.name}: failover placement failed: #{inspect(reason)}"
        )
    end
  end

  # -- reconnection --------------------------------------------------------------------

  @doc false
  # Asks `n` for its tombstones and parts; removes local parts it tombstoned,
  # takes its placement where it is newer; merges its tombstones here.
  def sync_with(n, manager) do
    case Fanout.call(n, Agent, :sync_view, []) do
      {:ok, %{tombstones: tombs, parts: parts}} ->
        GenServer.cast(manager, {:merge_tombstones, tombs})

        for pid <- Agent.groups(), meta = safe_meta(pid), meta != nil do
          id = meta.definition.id

          cond do
            Map.has_key?(tombs, id) ->
              stopped = Agent.stop(id)

              record(
                :sandbox_orphan_cleaned,
                node(),
                "sandbox #{meta.definition.name} destroyed while #{node()} was away: #{stopped} processes removed",
                %{id: id, told_by: n}
              )

            (theirs = parts[id]) && theirs.epoch > meta.epoch ->
              Agent.apply(meta.definition, theirs.placement, theirs.epoch)

            true ->
              :ok
          end
        end

        :ok

      {:error, _} ->
        :error
    end
  end

  # -- helpers -------------------------------------------------------------------------

  defp safe_meta(pid) do
    ClusterScope.Sandbox.Group.meta(pid)
  catch
    :exit, _ -> nil
  end

  defp put_tombstone(state, id, t) do
    tombs = state.tombstones |> Map.put_new(id, t) |> prune()

    tombs =
      if map_size(tombs) > @max_tombstones do
        tombs
        |> Enum.sort_by(fn {_, t} -> -t.at_ms end)
        |> Enum.take(@max_tombstones)
        |> Map.new()
      else
        tombs
      end

    :ets.insert(state.keep, {:tombstones, tombs})
    %{state | tombstones: tombs}
  end

  defp prune(tombs) do
    cutoff = now() - @tombstone_ttl_ms
    Map.reject(tombs, fn {_, t} -> t.at_ms < cutoff end)
  end

  defp event(state, type, node, cause, details) do
    e = %{id: state.next_id, type: type, node: node, cause: cause, details: details, at_ms: now()}
    ClusterScope.Telemetry.execute([:cluster_scope, :sandbox, type], %{count: 1}, e)
    ClusterScope.Cluster.State.sandbox_event(type, node, cause, details)
    q = :queue.in(e, state.events)

    {q, count} =
      if state.count + 1 > @max_events,
        do: {:queue.drop(q), state.count},
        else: {q, state.count + 1}

    %{state | events: q, count: count, next_id: state.next_id + 1}
  end

  defp now, do: System.system_time(:millisecond)
end
