defmodule ClusterScope.Operations.CodeDrift do
  @moduledoc """
  `GET /api/v1/cluster/code_drift`: modules loaded at different versions
  (MD5 of the loaded code) on different nodes, and modules loaded on some
  nodes only, each with its nodes, in module-name order and paged
  (`after` = the previous page's `next_after`).

  Cost on each node: `:erlang.loaded/0`, one MD5 read per loaded module
  from the loaded code (no module is called, nothing read from disk) and a
  digest of 256 bucket sums computed in the Rust core (2 KiB sent); then
  the modules of the buckets that differ only. Identical nodes exchange
  2 KiB each. Nodes without ClusterScope cannot hash their code and are in
  `node_errors` (`not_running`). See `ClusterScope.NodeViews.CodeDrift`;
  drift that lasts raises the `code_drift_modules` health alert
  (`ClusterScope.NodeViews.CodeDrift.Watch`), and the answer's `watch`
  says what the checking node saw at its last check (one more call).
  """

  use ClusterScope.Operation, name: "code_drift", requires: [:native]

  alias ClusterScope.NodeViews.CodeDrift

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/code_drift",
      summary: "Modules loaded at different versions, or on some nodes only",
      parameters: [
        %{
          name: :nodes,
          type: :array,
          items: :node,
          max_length: 1_000,
          location: :query,
          description: "only these nodes (default: every connected node running ClusterScope)"
        },
        %{
          name: :kind,
          type: :enum,
          values: [:all, :different_versions, :loaded_on_some_nodes],
          default: :all,
          location: :query,
          description: "which modules to list"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: CodeDrift.max_limit(),
          default: 100,
          location: :query,
          description: "modules per page"
        },
        %{
          name: :after,
          type: :string,
          max_length: 255,
          location: :query,
          description: "list the modules after this name (next_after of the previous page)"
        }
      ],
      responses: %{200 => %{description: "modules that differ, their versions and nodes"}}
    }
  end

  @impl true
  def execute(params), do: CodeDrift.cluster(params)
end
