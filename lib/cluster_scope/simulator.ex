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
  supervisor and #{3} processes each; at most #{32} nodes.
  """

  use GenServer

  @max_nodes 32
  @workers 3

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

  @doc "The processes of a virtual node (its supervisor and workers)."
  @spec processes(node()) :: [pid()]
  def processes(node), do: GenServer.call(__MODULE__, {:processes, node})

  # -- server ------------------------------------------------------------------

  @impl true
  def init(opts) do
    count = opts |> Keyword.get(:nodes, 3) |> max(1) |> min(@max_nodes)
    Process.flag(:trap_exit, true)

    nodes =
      for i <- 1..count, into: %{} do
        # Names come from a bounded counter, never from input.
        node = String.to_atom("sim_#{i}@simulated")
        {node, start_node()}
      end

    state = %{nodes: nodes, silent: MapSet.new()}
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
      {:ok, info} -> reply(put_in(state.nodes[node], fun.(info)))
      :error -> {:reply, {:error, :unknown_node}, state}
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
