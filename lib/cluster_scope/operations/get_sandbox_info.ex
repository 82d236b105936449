defmodule ClusterScope.Operations.GetSandboxInfo do
  @moduledoc """
  `GET /api/v1/cluster/sandboxes/:id`: one sandbox (by id or name): its
  definition and, per node, each process with its pid, module and status
  (`running`, `waiting`, ..., `failed` after too many restarts). One call
  per node of the sandbox; O(its processes).
  """

  use ClusterScope.Operation, name: "get_sandbox_info"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/sandboxes/:id",
      summary: "A sandbox's processes per node with their status",
      parameters: [
        %{
          name: :id,
          type: :string,
          required: true,
          min_length: 1,
          max_length: 100,
          location: :path,
          description: "the sandbox's id or name"
        }
      ],
      responses: %{200 => %{description: "the sandbox"}, 404 => %{description: "no such sandbox"}}
    }
  end

  @impl true
  def execute(%{id: id}), do: ClusterScope.Sandbox.info(id)
end
