defmodule ClusterScope.Simulator do
  @moduledoc """
  A simulated cluster inside this VM, for developing and demonstrating
  without real nodes (the `:simulated` mode of `ClusterScope.Mode`).

  Each virtual node has a name (`sim_1@simulated`, ...), a supervisor of its
  own and a few worker processes. Virtual nodes can be failed, frozen,
  partitioned and healed instantly and deterministically. The simulator
  turns its state into the same connection matrix the real heartbeats build
  (what each node hears of the others, and which views reach this node) and
  hands it to `ClusterScope.Cluster.State`, which classifies it with the same
  Rust code as a real cluster. So events and operation outputs have the same
  shapes as the real thing, marked `simulated: true`.

  This node takes part as the observer: it is a member of the simulated
  cluster, and what it "hears" is what the matrix says.

  ## Cost

  Nothing runs unless the mode is `:simulated`. Virtual nodes are a
  supervisor and #{3} processes each; at most #{128} nodes. Their processes,
  resources, alerts and operation latency are not processes but rows and
  figures generated from a seed (`ClusterScope.Simulator.Data`), read from
  a protected ETS table this server owns, so nothing of the simulation
  outlives it.

  ## Data

  Every virtual node has plausible processes (names, initial calls,
  applications, memory, reductions advancing with time, message queues and
  a few hot spots), a health sample, alerts consistent with that sample,
  operation latency histograms and build info, deterministic for the
  `:seed` option (default 1) and the time since the simulation started.
  In simulated mode the process, health and metrics operations answer for
  virtual nodes from it, marked `simulated: true`; a failed or frozen
  virtual node is in their `node_errors` like a real node that is down or
  suspected.
  """

  use GenServer

  @max_nodes 128
  @workers 3
  @table :cluster_scope_simulator
  # Killed virtual processes remembered at most (a kill past it is refused).
  @max_killed 10_000

  @typedoc "A virtual node's status."
  @type status :: :up | :down | :frozen

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The virtual nodes and their statuses."
  @spec nodes() :: %{node() => status()}
  def nodes, do: GenServer.call(__MODULE__, :nodes)

  @doc "Crashes a virtual node: its processes die and its connection closes."
  @spec fail(node()) :: :ok | {:error, :unknown_node}
  def fail(node), do: GenServer.call(__MODULE__, {:fail, node})

  @doc "Freezes a virtual node: silent while its connection stays up."
  @spec freeze(node()) :: :ok | {:error, :unknown_node}
  def freeze(node), do: GenServer.call(__MODULE__, {:freeze, node})

  @doc "Restarts a failed or frozen virtual node."
  @spec restart(node()) :: :ok | {:error, :unknown_node}
  def restart(node), do: GenServer.call(__MODULE__, {:restart, node})

  @doc """
  Splits the cluster into `groups` (lists of nodes; this node may be named
  too, or it stays with the group of the nodes not named): every link between
  two groups is cut both ways.
  """
  @spec partition([[node()]]) :: :ok | {:error, :unknown_node}
  def partition(groups), do: GenServer.call(__MODULE__, {:partition, groups})

  @doc "Cuts the link between two nodes: `:both` ways, or `:one_way` (a stops hearing b)."
  @spec cut(node(), node(), :both | :one_way) :: :ok | {:error, :unknown_node}
  def cut(a, b, direction \\ :both), do: GenServer.call(__MODULE__, {:cut, a, b, direction})

  @doc "Removes every cut."
  @spec heal() :: :ok
  def heal, do: GenServer.call(__MODULE__, :heal)

  @doc "The largest number of virtual nodes."
  @spec max_nodes() :: pos_integer()
  def max_nodes, do: @max_nodes

  @doc """
  Whether the simulation runs (its table exists). Cheap: one ETS lookup
  of the table's name.
  """
  @spec running?() :: boolean()
  def running?, do: :ets.whereis(@table) != :undefined

  @doc """
  Whether `node` is a virtual node of the running simulation. Cheap: a
  persistent-term read (the mode) and, in simulated mode, one ETS lookup.
  """
  @spec virtual?(term()) :: boolean()
  def virtual?(node) when is_atom(node) do
    ClusterScope.Mode.current() == :simulated and lookup({:node, node}) != nil
  end

  def virtual?(_), do: false

  @doc """
  The virtual nodes, sorted (`[]` when the simulation does not run).
  Cheap: one ETS lookup. Parameter validation accepts them as known nodes.
  """
  @spec virtual_nodes() :: [node()]
  def virtual_nodes do
    case lookup(:meta) do
      %{nodes: nodes} -> nodes
      nil -> []
    end
  end

  @doc """
  What the generated data needs: `%{seed:, nodes:, count:, started_ms:,
  started_at_ms:}` (monotonic and system start times), or `nil`.
  """
  @spec meta() :: map() | nil
  def meta, do: lookup(:meta)

  @doc """
  A virtual node's status and incarnation (bumped by each restart after a
  failure): `{status, incarnation}`, or `nil` for a node not simulated.
  """
  @spec node_state(node()) :: {status(), non_neg_integer()} | nil
  def node_state(node), do: lookup({:node, node})

  @doc "The keys of the killed processes of a virtual node's incarnation."
  @spec killed(node(), non_neg_integer()) :: MapSet.t()
  def killed(node, incarnation) do
    :ets.match(@table, {{:killed, node, incarnation, :"$1"}, true})
    |> MapSet.new(fn [key] -> key end)
  catch
    :error, :badarg -> MapSet.new()
  end

  @doc """
  Records a virtual process as killed: it is gone from the node's rows
  until the node restarts after a failure. `{:error, :full}` past
  #{@max_killed} killed processes.
  """
  @spec kill(node(), non_neg_integer(), non_neg_integer()) ::
          :ok | {:error, :full | :unknown_node}
  def kill(node, incarnation, key),
    do: GenServer.call(__MODULE__, {:kill, node, incarnation, key})

  @doc false
  # A value cached in the simulation's table, computed once by `fun`
  # (generated data that does not change with time).
  @spec cached(term(), (() -> term())) :: term()
  def cached(key, fun) do
    case lookup({:cache, key}) do
      nil ->
        value = fun.()
        GenServer.cast(__MODULE__, {:cache, key, value})
        value

      value ->
        value
    end
  end

  defp lookup(key) do
    case :ets.lookup(@table, key) do
      [{^key, value}] -> value
      [] -> nil
    end
  catch
    :error, :badarg -> nil
  end

  @doc "The processes of a virtual node (its supervisor and workers)."
  @spec processes(node()) :: [pid()]
  def processes(node), do: GenServer.call(__MODULE__, {:processes, node})

  # -- server ------------------------------------------------------------------

  @impl true
  def init(opts) do
    count = opts |> Keyword.get(:nodes, 3) |> max(1) |> min(@max_nodes)
    seed = Keyword.get(opts, :seed, 1)
    Process.flag(:trap_exit, true)

    nodes =
      for i <- 1..count, into: %{} do
        # Names come from a bounded counter, never from input.
        node = String.to_atom("sim_#{i}@simulated")
        {node, start_node()}
      end

    # Readers (operations) look here without calling this server; the
    # table dies with it, so a switch away leaves nothing behind.
    :ets.new(@table, [:named_table, :protected, :set, read_concurrency: true])

    :ets.insert(
      @table,
      {:meta,
       %{
         seed: seed,
         nodes: nodes |> Map.keys() |> Enum.sort(),
         count: count,
         started_ms: System.monotonic_time(:millisecond),
         started_at_ms: System.system_time(:millisecond)
       }}
    )

    for {node, info} <- nodes, do: :ets.insert(@table, {{:node, node}, {info.status, 0}})

    state = %{nodes: nodes, silent: MapSet.new(), killed: 0}
    for node <- Map.keys(nodes), do: notify({:sim_nodeup, node})
    publish(state)
    {:ok, state}
  end

  @impl true
  def handle_call(:nodes, _from, state) do
    {:reply, Map.new(state.nodes, fn {n, v} -> {n, v.status} end), state}
  end

  def handle_call({:processes, node}, _from, state) do
    case Map.fetch(state.nodes, node) do
      {:ok, %{sup: sup}} when is_pid(sup) ->
        children = for {_, pid, _, _} <- Supervisor.which_children(sup), is_pid(pid), do: pid
        {:reply, [sup | children], state}

      _ ->
        {:reply, [], state}
    end
  end

  def handle_call({:kill, node, incarnation, key}, _from, state) do
    cond do
      not Map.has_key?(state.nodes, node) ->
        {:reply, {:error, :unknown_node}, state}

      state.killed >= @max_killed ->
        {:reply, {:error, :full}, state}

      true ->
        new? = :ets.insert_new(@table, {{:killed, node, incarnation, key}, true})
        {:reply, :ok, %{state | killed: state.killed + if(new?, do: 1, else: 0)}}
    end
  end

  def handle_call({:fail, node}, _from, state) do
    with_node(state, node, fn info ->
      if is_pid(info.sup), do: Supervisor.stop(info.sup, :shutdown)
      notify({:sim_nodedown, node, :connection_closed})
      %{info | status: :down, sup: nil}
    end)
  end

  def handle_call({:freeze, node}, _from, state) do
    with_node(state, node, fn info -> %{info | status: :frozen} end)
  end

  def handle_call({:restart, node}, _from, state) do
    with_node(state, node, fn
      %{status: :down} ->
        notify({:sim_nodeup, node})
        start_node()

      info ->
        %{info | status: :up}
    end)
  end

  def handle_call({:partition, groups}, _from, state) do
    named = List.flatten(groups)

    if Enum.all?(named, &(&1 == node() or Map.has_key?(state.nodes, &1))) do
      # This node stays with the group of the nodes not named, if not named.
      groups =
        if node() in named,
          do: groups,
          else: [[node() | Map.keys(state.nodes) -- named] | groups]

      silent =
        for g1 <- groups, g2 <- groups, g1 != g2, a <- g1, b <- g2, into: state.silent, do: {a, b}

      reply(%{state | silent: silent})
    else
      {:reply, {:error, :unknown_node}, state}
    end
  end

  def handle_call({:cut, a, b, direction}, _from, state) do
    if Enum.all?([a, b], &(&1 == node() or Map.has_key?(state.nodes, &1))) do
      # {x, y} in silent: x no longer hears y.
      silent = MapSet.put(state.silent, {a, b})
      silent = if direction == :both, do: MapSet.put(silent, {b, a}), else: silent
      reply(%{state | silent: silent})
    else
      {:reply, {:error, :unknown_node}, state}
    end
  end

  def handle_call(:heal, _from, state), do: reply(%{state | silent: MapSet.new()})

  @impl true
  def handle_cast({:cache, key, value}, state) do
    :ets.insert(@table, {{:cache, key}, value})
    {:noreply, state}
  end

  @impl true
  def handle_info(:publish, state) do
    publish(state)
    {:noreply, state}
  end

  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    for {node, info} <- state.nodes do
      if is_pid(info.sup) and Process.alive?(info.sup), do: Supervisor.stop(info.sup, :shutdown)
      notify({:sim_nodedown, node, :simulation_stopped})
    end

    :ok
  end

  defp with_node(state, node, fun) do
    case Map.fetch(state.nodes, node) do
      {:ok, info} ->
        new = fun.(info)
        {_, incarnation} = node_state(node)
        # A restart after a failure is a new incarnation: new pids, none killed.
        incarnation =
          if info.status == :down and new.status == :up, do: incarnation + 1, else: incarnation

        :ets.insert(@table, {{:node, node}, {new.status, incarnation}})
        reply(put_in(state.nodes[node], new))

      :error ->
        {:reply, {:error, :unknown_node}, state}
    end
  end

  defp reply(state) do
    publish(state)
    {:reply, :ok, state}
  end

  defp start_node do
    children =
      for i <- 1..@workers do
        Supervisor.child_spec({Agent, fn -> %{worker: i} end}, id: {:worker, i})
      end

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    %{status: :up, sup: sup}
  end

  # -- the matrix ------------------------------------------------------------

  @doc false
  # The observation this node would build from real heartbeats.
  def observation(state) do
    me = node()
    all = Enum.sort([me | Map.keys(state.nodes)])
    status = fn n -> if n == me, do: :up, else: state.nodes[n].status end

    # x hears y: y is running (up) and the link y -> x is not cut.
    hears? = fn x, y ->
      x == y or (status.(y) == :up and not MapSet.member?(state.silent, {x, y}))
    end

    # A view travels to this node along "hears" edges: we get x's view when
    # we hear x, or hear someone who hears x, and x is up to send it.
    known_views = reachable_views(all, me, hears?, status)

    reach =
      for x <- all do
        if MapSet.member?(known_views, x) do
          for y <- all, do: if(hears?.(x, y), do: :reachable, else: :unreachable)
        else
          List.duplicate(:unknown, length(all))
        end
      end

    %{
      nodes: Enum.map(all, &Atom.to_string/1),
      node_atoms: all,
      self_index: Enum.find_index(all, &(&1 == me)),
      reach: reach,
      connected: for(n <- all, do: n == me or status.(n) != :down),
      down: for(n <- all, do: status.(n) == :down),
      # The kernel of a frozen node still acknowledges: no loss. A cut does lose.
      net_loss: for(n <- all, do: n != me and status.(n) == :up and not hears?.(me, n)),
      quorum: nil
    }
  end

  defp reachable_views(all, me, hears?, status) do
    Stream.iterate(MapSet.new([me]), fn known ->
      for x <- all,
          status.(x) == :up or x == me,
          Enum.any?(known, &hears?.(&1, x)),
          into: known,
          do: x
    end)
    |> Enum.reduce_while(nil, fn set, prev ->
      if set == prev, do: {:halt, set}, else: {:cont, set}
    end)
  end

  defp publish(state), do: notify({:sim_views, observation(state)})

  defp notify(message) do
    case Process.whereis(ClusterScope.Cluster.State) do
      nil -> :ok
      pid -> send(pid, message)
    end
  end
end
