defmodule ClusterScope.Operations.ClusterPorts do
  @moduledoc """
  `GET /api/v1/cluster/ports`: the ports and sockets of every node ranked
  by queue size, input bytes, output bytes or memory, largest first; each
  row with its node, name, kind, connected process, and for a socket its
  local and peer addresses, status and counters. Distribution ports are
  marked (`distribution: true`) with the node at their other end
  (`peer_node`). Paged with `next_cursor`.

  Cost on each node: one `port_info/2` of the ranked item per port (one
  `:socket.info/1` per `socket` socket), bounded by `max_ports` and a
  deadline below the node timeout; only the best `limit` are read whole
  and cross the network, merged here in the Rust core. A node without
  ClusterScope answers too (agentless). See `ClusterScope.NodeViews.Ports`.
  """

  use ClusterScope.Operation, name: "cluster_ports", requires: [:native]

  alias ClusterScope.NodeViews.{Ports, Ranking}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/ports",
      summary: "Ports and sockets of every node ranked by queue, input or output bytes",
      parameters: [
        %{
          name: :nodes,
          type: :array,
          items: :node,
          max_length: 1_000,
          location: :query,
          description: "only these nodes (default: every connected node)"
        },
        %{
          name: :sort_by,
          type: :enum,
          values: Ports.sort_fields(),
          default: :queue_size,
          location: :query,
          description: "rank by this counter, largest first"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1000,
          default: 20,
          location: :query,
          description: "rows per page"
        },
        %{
          name: :cursor,
          type: :string,
          max_length: 1000,
          location: :query,
          description: "next_cursor of the previous page"
        },
        %{
          name: :name,
          type: :string,
          min_length: 1,
          max_length: 255,
          location: :query,
          description: "only ports whose driver or program name contains this text"
        },
        %{
          name: :max_ports,
          type: :integer,
          min: 1,
          max: 200_000,
          default: 200_000,
          location: :query,
          description: "read at most this many ports and sockets on each node"
        }
      ],
      responses: %{200 => %{description: "a page of ports and sockets, with next_cursor"}}
    }
  end

  def check_params(%{cursor: cursor} = params) when is_binary(cursor) do
    case Ranking.decode_cursor(cursor, params.sort_by) do
      {:ok, decoded} -> {:ok, %{params | cursor: decoded}}
      {:error, message} -> {:error, [%{field: "cursor", message: message}]}
    end
  end

  def check_params(params), do: {:ok, params}

  @impl true
  def execute(params), do: Ports.ports(params)
end
