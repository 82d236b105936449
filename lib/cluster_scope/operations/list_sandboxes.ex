defmodule ClusterScope.Operations.ListSandboxes do
  @moduledoc """
  `GET /api/v1/cluster/sandboxes`: every sandbox the nodes running
  ClusterScope hold, with its processes per node (placed, running, failed)
  and epoch. One call per node (partial with `node_errors`); O(sandbox
  processes) on each node.
  """

  use ClusterScope.Operation, name: "list_sandboxes"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/sandboxes",
      summary: "List sandboxes with their processes per node",
      parameters: [],
      responses: %{200 => %{description: "the sandboxes"}}
    }
  end

  @impl true
  def execute(_params), do: ClusterScope.Sandbox.list()
end
