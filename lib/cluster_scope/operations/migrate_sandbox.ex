defmodule ClusterScope.Operations.MigrateSandbox do
  @moduledoc """
  `POST /api/v1/cluster/sandboxes/:id/migrate`: moves a sandbox's processes
  off node `from` (connected or gone) onto `to` (default: the sandbox's
  other connected nodes), placed by
  `strategy` (`spread` or `least_loaded`) in the Rust core. The moved
  processes are started anew on their targets (their state is not carried)
  and stopped on `from`; a failure rolls the placement back. Mutating
  (`:control` scope).
  """

  # Majority: it decides a placement, like the failover of the majority.
  use ClusterScope.Operation,
    name: "migrate_sandbox",
    requires: [:native],
    timeout: 90_000,
    partition: :majority,
    idempotent: false

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/cluster/sandboxes/:id/migrate",
      summary: "Move a sandbox's processes off a node",
      parameters: [
        %{
          name: :id,
          type: :string,
          required: true,
          min_length: 1,
          max_length: 100,
          location: :path,
          description: "the sandbox's id or name"
        },
        %{
          name: :from,
          type: :string,
          required: true,
          min_length: 1,
          max_length: 255,
          location: :body,
          description:
            "move every process of the sandbox off this node (one of its nodes, connected or gone)"
        },
        %{
          name: :to,
          type: :array,
          items: :node,
          min_length: 1,
          max_length: 1_000,
          location: :body,
          description: "onto these nodes (default the sandbox's other nodes)"
        },
        %{
          name: :strategy,
          type: :enum,
          values: [:spread, :least_loaded],
          default: :spread,
          location: :body,
          description: "spread (fewest processes first) or least_loaded (health data)"
        }
      ],
      responses: %{200 => %{description: "how many moved, and the processes per node"}}
    }
  end

  @impl true
  def execute(params),
    do: ClusterScope.Sandbox.migrate(params.id, params.from, params[:to], params.strategy)
end
