defmodule ClusterScope.Operations.CreateSandbox do
  @moduledoc """
  `POST /api/v1/cluster/sandboxes`: creates a sandbox, a named group of
  supervised processes spread over nodes (see `ClusterScope.Sandbox`).

  Body: `name`, `children` (a list of `{"module", "function", "args",
  "count", "restart", "shutdown"}`; `module` must be listed in the host's
  `:startable_modules`, default none, since its start function runs with
  the given arguments), `strategy` (`round_robin`, `spread`, `pinned`,
  `least_loaded`), `nodes`, `restart` (`survivors`, `none`). Limits:
  `:sandbox_max_processes` per sandbox, `:sandbox_max_per_node`. All or
  nothing: when a node fails its part, the parts started are removed.
  `dry_run: true` answers the placement (`planned: true`, processes per
  node and why) and starts nothing. In simulated mode every create is such
  a plan, over the simulator's up virtual nodes (they run no processes and
  report no load, so `least_loaded` places as `spread` does): the same
  validation and the same placement code as on a real cluster.
  Mutating (`:control` scope).
  """

  # Majority: a sandbox placed by a minority could be placed again by the
  # majority's failover, a second copy.
  use ClusterScope.Operation,
    name: "create_sandbox",
    requires: [:native],
    timeout: 90_000,
    partition: :majority,
    idempotent: false

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/cluster/sandboxes",
      summary: "Create a sandbox of processes spread over nodes",
      parameters: [
        %{
          name: :name,
          type: :string,
          required: true,
          min_length: 1,
          max_length: 64,
          location: :body,
          description: "unique name: letters, digits, _ . -"
        },
        %{
          name: :children,
          type: :json,
          required: true,
          location: :body,
          description:
            "a list of child specs {module, function, args, count, restart, shutdown}; " <>
              "module from the host's startable_modules"
        },
        %{
          name: :strategy,
          type: :enum,
          values: [:round_robin, :spread, :pinned, :least_loaded],
          default: :spread,
          location: :body,
          description: "placement: round_robin, spread, pinned (to nodes, in order), least_loaded"
        },
        %{
          name: :nodes,
          type: :array,
          items: :string,
          min_length: 1,
          max_length: 1_000,
          location: :body,
          description: "the nodes to use (default every node running ClusterScope)"
        },
        %{
          name: :restart,
          type: :enum,
          values: [:survivors, :none],
          default: :survivors,
          location: :body,
          description: "when a node is lost: restart its processes on survivors, or not"
        },
        %{
          name: :dry_run,
          type: :boolean,
          default: false,
          location: :body,
          description: "only answer the placement (planned: true); start nothing"
        }
      ],
      responses: %{200 => %{description: "the sandbox's id and its processes per node"}}
    }
  end

  @impl true
  def execute(params), do: ClusterScope.Sandbox.create(params)
end
