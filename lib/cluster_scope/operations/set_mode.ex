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

  # Anywhere: it switches only this node's source of cluster data.
  use ClusterScope.Operation,
    name: "set_mode",
    timeout: 120_000,
    partition: :anywhere,
    idempotent: true

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
          max: 100,
          default: 3,
          location: :body,
          description: "peers (at most 16) or virtual nodes (at most 100) to start"
        },
        %{
          name: :seed,
          type: :integer,
          min: 0,
          max: 4_294_967_295,
          default: 1,
          location: :body,
          description:
            "simulated mode: the seed of the virtual nodes' data (same seed, same data)"
        }
      ],
      responses: %{
        200 => %{description: "the new mode and its nodes"},
        403 => %{description: "forbidden: the allow_mode_switch option is off on this node"}
      }
    }
  end

  @max_peers 16

  def check_params(%{mode: :local_cluster, nodes: count}) when count > @max_peers,
    do:
      {:error,
       [
         %{
           field: "nodes",
           message:
             "must be at most #{@max_peers} for local_cluster (each peer is a full VM); " <>
               "up to 100 virtual nodes in simulated mode"
         }
       ]}

  def check_params(params), do: {:ok, params}

  @impl true
  def execute(%{mode: mode, nodes: count} = params) do
    case ClusterScope.Mode.set(mode, nodes: count, seed: Map.get(params, :seed, 1)) do
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
