defmodule ClusterScope.Operations.NodeResources do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node/resources`: the latest health sample of
  one node (memory, process/port/atom usage, run queues, scheduler
  utilisation, reductions, longest message queues, busy distribution ports,
  connectivity, values and anomalies), the state of its monitor (interval in
  force, throttling and why, skipped collectors, its own measured cost), its
  active alerts and the thresholds in force there.

  One remote call to that node, answered from its monitor's table. A node
  that does not answer gives `node_unavailable` within the node timeout.
  """

  use ClusterScope.Operation, name: "node_resources"

  alias ClusterScope.Fanout

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node/resources",
      summary: "Latest health sample and monitor state of a node",
      parameters: [
        %{
          name: :node,
          type: :node,
          required: true,
          location: :path,
          description: "the node to ask"
        }
      ],
      responses: %{200 => %{description: "the node's sample, monitor state and alerts"}}
    }
  end

  @impl true
  def execute(%{node: node}) do
    if ClusterScope.Simulator.virtual?(node), do: simulated(node), else: real(node)
  end

  # A virtual node of the simulated mode: its generated sample.
  defp simulated(node) do
    alias ClusterScope.Simulator.Data

    case Data.unavailable(node) do
      nil -> {:ok, Data.mark(Data.resources(node))}
      error -> {:error, {:node_unavailable, error.reason, error}}
    end
  end

  defp real(node) do
    case Fanout.call(node, ClusterScope.Agent, :resources, []) do
      {:ok, {:ok, resources}} ->
        {:ok, resources}

      {:ok, {:error, reason}} ->
        {:error, {:unavailable, reason}}

      {:ok, other} ->
        {:error, {:internal, "unexpected answer from #{node}: #{inspect(other, limit: 5)}"}}

      {:error, error} ->
        {:error, {:node_unavailable, error.reason, error}}
    end
  end
end
