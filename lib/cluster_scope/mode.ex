defmodule ClusterScope.Mode do
  @moduledoc """
  The cluster ClusterScope looks at, switchable at run time:

    * `:multi_node` (default) - the real cluster this node belongs to;
    * `:local_cluster` - ClusterScope starts N real peer nodes on this host
      (`ClusterScope.LocalCluster`) and this node joins them: a real cluster
      on a laptop;
    * `:simulated` - virtual nodes inside this VM (`ClusterScope.Simulator`)
      that can be failed, frozen, partitioned and healed instantly.

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
  3). Returns `{:ok, %{mode: mode, nodes: [node]}}`.
  """
  @spec set(mode(), keyword()) :: {:ok, map()} | {:error, term()}
  def set(mode, opts \\ []) when mode in @modes,
    do: GenServer.call(__MODULE__, {:set, mode, opts}, 120_000)

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

    case enter(mode, count) do
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

  defp enter(:multi_node, _count), do: {:ok, %{peers: [], simulator: nil}}

  defp enter(:local_cluster, count) do
    with {:ok, _} <- LocalCluster.ensure_distributed(name: "cluster_scope_local"),
         {:ok, peers} <- LocalCluster.start_peers(count, link: false) do
      {:ok, %{peers: peers, simulator: nil}}
    end
  end

  defp enter(:simulated, count) do
    case ClusterScope.Simulator.start_link(nodes: count) do
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
