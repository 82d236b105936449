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
      parameters:
        Ranking.parameters(
          sort_fields: Ports.sort_fields(),
          sort_default: :queue_size,
          sort_description: "rank by this counter, largest first",
          name_description: "only ports whose driver or program name contains this text",
          max: {:max_ports, 200_000},
          max_description: "read at most this many ports and sockets on each node"
        ),
      responses: %{200 => %{description: "a page of ports and sockets, with next_cursor"}}
    }
  end

  @doc false
  def check_params(params), do: Ranking.check_cursor(params)

  @impl true
  def execute(params), do: Ports.ports(params)
end
