defmodule ClusterScope.Operations.ClusterApplications do
  @moduledoc """
  `GET /api/v1/cluster/applications`: the applications of every node (name,
  version, description, started or only loaded), each row with its node,
  and the differences between nodes: an application missing on a node, at
  different versions, or started on some nodes and only loaded on others
  (a half-finished rolling deploy).

  Cost on each node: `:application.loaded_applications/0` and
  `:application.which_applications/1`, OTP's own, so nodes without
  ClusterScope answer too; the comparison runs in the Rust core on this
  node (see `ClusterScope.NodeViews.Applications`). Rows are bounded by
  `limit`; nodes that do not answer within the node timeout are in
  `node_errors`.
  """

  use ClusterScope.Operation, name: "cluster_applications", requires: [:native]

  alias ClusterScope.NodeViews.Applications

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/applications",
      summary: "Applications of every node and the differences between nodes",
      parameters: [
        %{
          name: :nodes,
          type: :array,
          items: :node,
          max_length: 1_000,
          location: :query,
          description: "only these nodes (default: this node and every connected one)"
        },
        %{
          name: :application,
          type: :string,
          max_length: 255,
          location: :query,
          description: "only this application, e.g. kernel"
        },
        %{
          name: :only_differences,
          type: :boolean,
          default: false,
          location: :query,
          description: "list the differences only, no rows"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: Applications.max_limit(),
          default: 1_000,
          location: :query,
          description: "rows at most (applications_total gives them all)"
        }
      ],
      responses: %{200 => %{description: "rows per node and application, and differences"}}
    }
  end

  @impl true
  def execute(params), do: Applications.cluster(params)
end
