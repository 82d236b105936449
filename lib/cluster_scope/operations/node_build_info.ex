defmodule ClusterScope.Operations.NodeBuildInfo do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node/build`: the build of ClusterScope on one
  node (OTP, Elixir, ClusterScope and native core versions), asked on that
  node.

  Cheap: one remote call returning constants. A node that does not answer
  gives `node_unavailable` with its cause within the node timeout.

  Answered by every ClusterScope version (the protocol's compatible
  subset): `protocol_version` and `min_compatible_protocol` are the node's,
  and `protocol.compatible` says whether this node can talk with it (a
  `false` means its agent is not called: see `ClusterScope.Protocol`).
  """

  use ClusterScope.Operation, name: "node_build_info"

  alias ClusterScope.Fanout

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node/build",
      summary: "Build info of ClusterScope on a node",
      parameters: [
        %{
          name: :node,
          type: :node,
          required: true,
          location: :path,
          description: "the node to ask"
        }
      ],
      responses: %{200 => %{description: "the node's build"}}
    }
  end

  @impl true
  def execute(%{node: node}) do
    alias ClusterScope.Simulator.Data

    # A virtual node of the simulated mode answers from the simulator.
    call =
      if ClusterScope.Simulator.virtual?(node) do
        case Data.unavailable(node) do
          nil -> {:ok, Data.mark(Data.build_info(node))}
          error -> {:error, error}
        end
      else
        Fanout.call(node, ClusterScope, :build_info, [])
      end

    case call do
      {:ok, info} -> {:ok, info}
      {:error, error} -> {:error, {:node_unavailable, error.reason, error}}
    end
  end

  @impl true
  def format_response(info) do
    native =
      case info.native do
        %{} = native -> native
        {:error, reason} -> %{error: reason}
      end

    info = %{info | native: native}

    case info do
      %{protocol_version: v, min_compatible_protocol: min} ->
        Map.put(info, :protocol, %{
          here: ClusterScope.Protocol.version(),
          compatible: ClusterScope.Protocol.speak({v, min}) != nil
        })

      _ ->
        # A build before protocol 2 reports only the native core's version.
        v = get_in(info, [:native, :protocol_version]) || 1

        info
        |> Map.put(:protocol_version, v)
        |> Map.put(:protocol, %{
          here: ClusterScope.Protocol.version(),
          compatible: ClusterScope.Protocol.speak({v, v}) != nil
        })
    end
  end
end
