defmodule ClusterScope.Operations.NodeInfo do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node`: one node as this node knows it (status,
  metadata, down cause) and, when it answers, what it says of itself (OTP
  release, ClusterScope version, uptime, process and port counts, memory:
  `ClusterScope.Agent.facts/0`, run on that node).

  The node may be down: it is then described from this node's records and
  the live part is replaced by its error (within the node timeout).
  """

  use ClusterScope.Operation, name: "node_info"

  alias ClusterScope.Cluster.State

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node",
      summary: "Status and live facts of one node",
      parameters: [
        %{
          name: :node,
          type: :string,
          required: true,
          max_length: 255,
          location: :path,
          description: "a node known to this node (up or down)"
        }
      ],
      responses: %{200 => %{description: "the node"}}
    }
  end

  def check_params(%{node: text} = params) do
    # Nodes that went down stay known here; resolve the name among them
    # without creating an atom.
    case Enum.find(State.topology().nodes, &(Atom.to_string(&1.node) == text)) do
      nil ->
        {:error,
         [
           %{
             field: "node",
             message: "is not a node known to #{node()} (see GET /api/v1/cluster/topology)"
           }
         ]}

      info ->
        {:ok, %{params | node: info.node}}
    end
  end

  @impl true
  def execute(%{node: node}) do
    info = Enum.find(State.topology().nodes, &(&1.node == node))

    live =
      case live(node) do
        {:ok, facts} -> facts
        {:error, error} -> %{error: error}
      end

    {:ok, Map.put(info, :live, live)}
  end

  # A virtual node of the simulated mode answers from the simulator.
  defp live(node) do
    alias ClusterScope.Simulator.Data

    if ClusterScope.Simulator.virtual?(node) do
      case Data.unavailable(node) do
        nil -> {:ok, Data.mark(Data.local_facts(node))}
        error -> {:error, error}
      end
    else
      ClusterScope.Fanout.call(node, ClusterScope.Agent, :facts, [])
    end
  end
end
