defmodule ClusterScope.Test.ManualStrategy do
  @moduledoc """
  A libcluster strategy for tests. In libcluster 3.5 only DNSPoll, the
  Kubernetes strategies and Rancher ever disconnect nodes, each when a node
  leaves what it discovers; this one does what they do at that moment, on
  command: `Cluster.Strategy.disconnect_nodes/4` (and `connect_nodes/4`),
  so libcluster itself disconnects and emits its telemetry from the
  strategy process, as a real one would. At start it connects the nodes of
  its `hosts` config, like Epmd.

  No compile-time dependency on libcluster (calls go through `apply/3`):
  the test support compiles without it.
  """

  use GenServer

  @doc false
  def child_spec(args),
    do: %{id: __MODULE__, type: :worker, start: {__MODULE__, :start_link, [args]}}

  @doc false
  def start_link([state]), do: GenServer.start_link(__MODULE__, state, name: name(state.topology))

  @doc "Has the strategy of `topology` disconnect `nodes` (libcluster's own disconnect)."
  def disconnect(topology, nodes), do: GenServer.call(name(topology), {:disconnect, nodes})

  @doc "Has the strategy of `topology` connect `nodes`."
  def connect(topology, nodes), do: GenServer.call(name(topology), {:connect, nodes})

  defp name(topology), do: Module.concat(__MODULE__, topology)

  @impl true
  def init(state) do
    connect_nodes(state, Keyword.get(state.config, :hosts, []))
    {:ok, state}
  end

  @impl true
  def handle_call({:disconnect, nodes}, _from, state) do
    {:reply,
     apply(Cluster.Strategy, :disconnect_nodes, [
       state.topology,
       state.disconnect,
       state.list_nodes,
       nodes
     ]), state}
  end

  def handle_call({:connect, nodes}, _from, state),
    do: {:reply, connect_nodes(state, nodes), state}

  defp connect_nodes(state, nodes) do
    apply(Cluster.Strategy, :connect_nodes, [
      state.topology,
      state.connect,
      state.list_nodes,
      nodes
    ])
  end
end
