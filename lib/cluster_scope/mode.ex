defmodule ClusterScope.Mode do
  @moduledoc """
  The cluster ClusterScope looks at, switchable at run time:

    * `:multi_node` (default) - the real cluster this node belongs to;
    * `:local_cluster` - ClusterScope starts N real peer nodes on this host
      (`ClusterScope.LocalCluster`) and this node joins them: a real cluster
      on a laptop;
    * `:simulated` - virtual nodes inside this VM (`ClusterScope.Simulator`)
      that can be failed, frozen, partitioned and healed instantly.

  ## Refused unless allowed

  A switch to `:local_cluster` or `:simulated` is refused with
  `{:error, {:forbidden, message}}` unless the `allow_mode_switch` option
  is `true` (default `false`; `mix cluster_scope.demo` sets it): on a
  production node it would replace the node's view of its real cluster, or
  start VMs from it. A switch back to `:multi_node` is always allowed.

  The peers of `:local_cluster` get a fresh random cookie per switch (this
  node sets it for them with `:erlang.set_cookie/2`) and `-connect_all
  false`: the host's other nodes cannot connect to them, and `global` never
  meshes them into the host's cluster.

  A switch keeps the debugging session: subscriptions and the event history
  of `ClusterScope.Cluster.State` survive it, and the switch itself is an
  event (`:mode`). Peers and virtual nodes of the previous mode are stopped.

  ## Cost

  `:local_cluster` starts full VMs (about 40 MB and half a second each);
  `:simulated` a few processes per virtual node. `:multi_node` costs nothing.
  """

  use GenServer

  alias ClusterScope.Cluster.State
  alias ClusterScope.LocalCluster

  @modes [:multi_node, :local_cluster, :simulated]

  @type mode :: :multi_node | :local_cluster | :simulated

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The modes."
  @spec modes() :: [mode()]
  def modes, do: @modes

  @doc "The current mode. Cheap: a persistent term, written only on a switch."
  @spec current() :: mode()
  def current, do: :persistent_term.get({__MODULE__, :current}, :multi_node)

  @doc """
  Switches mode. Options: `:nodes` (how many peers or virtual nodes, default
  3), `:seed` (simulated mode: the seed of the virtual nodes' data, default 1). Returns `{:ok, %{mode: mode, nodes: [node]}}`, or
  `{:error, {:forbidden, message}}` for a switch away from `:multi_node`
  while `allow_mode_switch` is off.
  """
  @spec set(mode(), keyword()) :: {:ok, map()} | {:error, term()}
  def set(mode, opts \\ []) when mode in @modes do
    if mode == :multi_node or allowed?(),
      do: GenServer.call(__MODULE__, {:set, mode, opts}, 120_000),
      else: {:error, {:forbidden, forbidden_message(mode)}}
  end

  @doc "Whether switching away from the real cluster is allowed here (`allow_mode_switch`)."
  @spec allowed?() :: boolean()
  def allowed?, do: ClusterScope.Config.get(:allow_mode_switch) == true

  defp forbidden_message(mode) do
    "switching to #{mode} is refused on #{node()}: the allow_mode_switch option is off " <>
      "(set `config :cluster_scope, allow_mode_switch: true` only on a development node; " <>
      "it replaces this node's view of its cluster)"
  end

  @impl true
  def init(_opts) do
    :persistent_term.put({__MODULE__, :current}, :multi_node)
    {:ok, %{mode: :multi_node, peers: [], simulator: nil}}
  end

  @impl true
  def handle_call({:set, mode, opts}, _from, state) do
    state = leave(state)
    :ok = State.set_mode(state.mode, mode)
    count = Keyword.get(opts, :nodes, 3)

    case enter(mode, count, Keyword.get(opts, :seed, 1)) do
      {:ok, new} ->
        nodes = Enum.map(new.peers, & &1.node) ++ simulated_nodes(new.simulator)
        :persistent_term.put({__MODULE__, :current}, mode)
        {:reply, {:ok, %{mode: mode, nodes: nodes}}, Map.put(new, :mode, mode)}

      {:error, reason} ->
        :ok = State.set_mode(mode, :multi_node)
        :persistent_term.put({__MODULE__, :current}, :multi_node)
        {:reply, {:error, reason}, %{mode: :multi_node, peers: [], simulator: nil}}
    end
  end

  defp enter(:simulated, count, seed), do: enter_simulated(count, seed)
  defp enter(mode, count, _seed), do: enter(mode, count)

  defp enter(:multi_node, _count), do: {:ok, %{peers: [], simulator: nil}}

  defp enter(:local_cluster, count) do
    with {:ok, _} <- LocalCluster.ensure_distributed(name: "cluster_scope_local"),
         {:ok, peers} <-
           LocalCluster.start_peers(count,
             link: false,
             cookie: LocalCluster.random_cookie(),
             connect_all: false
           ) do
      {:ok, %{peers: peers, simulator: nil}}
    end
  end

  defp enter_simulated(count, seed) do
    case ClusterScope.Simulator.start_link(nodes: count, seed: seed) do
      {:ok, pid} ->
        Process.unlink(pid)
        {:ok, %{peers: [], simulator: pid}}

      {:error, reason} ->
        {:error, reason}
    end
  end

  defp leave(state) do
    Enum.each(state.peers, &LocalCluster.stop/1)
    if state.simulator && Process.alive?(state.simulator), do: GenServer.stop(state.simulator)
    %{state | peers: [], simulator: nil}
  end

  defp simulated_nodes(nil), do: []
  defp simulated_nodes(_pid), do: ClusterScope.Simulator.nodes() |> Map.keys() |> Enum.sort()
end
