defmodule ClusterScope.Operations.SetMode do
  @moduledoc """
  `POST /api/v1/cluster/mode`: switches between the real cluster
  (`multi_node`), a local cluster of real peer nodes (`local_cluster`) and a
  simulated cluster (`simulated`). Subscriptions and the event history
  survive. Mutating: needs the token over HTTP.

  Refused with `forbidden` unless the `allow_mode_switch` option is `true`
  (default `false`: a production node never switches its view of its
  cluster); switching back to `multi_node` is always allowed.
  """

  use ClusterScope.Operation, name: "set_mode", timeout: 120_000

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/cluster/mode",
      summary: "Switch between the real, a local and a simulated cluster",
      parameters: [
        %{
          name: :mode,
          type: :enum,
          values: ClusterScope.Mode.modes(),
          required: true,
          location: :body,
          description: "the mode"
        },
        %{
          name: :nodes,
          type: :integer,
          min: 1,
          max: 16,
          default: 3,
          location: :body,
          description: "peers or virtual nodes to start"
        }
      ],
      responses: %{
        200 => %{description: "the new mode and its nodes"},
        403 => %{description: "forbidden: the allow_mode_switch option is off on this node"}
      }
    }
  end

  @impl true
  def execute(%{mode: mode, nodes: count}) do
    case ClusterScope.Mode.set(mode, nodes: count) do
      {:ok, result} ->
        {:ok, result}

      {:error, {:forbidden, message}} ->
        {:error,
         ClusterScope.Error.new(:forbidden, message,
           details: %{option: "allow_mode_switch"},
           remediation: [
             "Leave it off on production nodes: a mode switch replaces the node's view of its cluster.",
             "On a development node: config :cluster_scope, allow_mode_switch: true (mix cluster_scope.demo sets it)."
           ]
         )}

      {:error, reason} ->
        {:error, {:unavailable, "could not switch to #{mode}: #{inspect(reason)}"}}
    end
  end
end
