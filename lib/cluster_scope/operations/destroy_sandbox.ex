defmodule ClusterScope.Operations.DestroySandbox do
  @moduledoc """
  `DELETE /api/v1/cluster/sandboxes/:id`: stops a sandbox's processes on
  every node and records a tombstone on each node reached. A node that
  could not be reached is listed in `pending_nodes`: it removes its part
  when it reconnects (see `ClusterScope.Sandbox.Manager`). Mutating
  (`:control` scope).
  """

  # Majority: the parts on the other side would live on meanwhile.
  # Idempotent: destroying twice is destroying once (tombstones).
  use ClusterScope.Operation,
    name: "destroy_sandbox",
    timeout: 60_000,
    partition: :majority,
    idempotent: true

  @impl true
  def rest_config do
    %{
      method: :delete,
      path: "/api/v1/cluster/sandboxes/:id",
      summary: "Destroy a sandbox on every node",
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
      responses: %{200 => %{description: "processes stopped, nodes reached, nodes pending"}}
    }
  end

  @impl true
  def execute(%{id: id}), do: ClusterScope.Sandbox.destroy(id)
end
