defmodule ClusterScope.Operations.EtsTables do
  @moduledoc """
  `GET /api/v1/cluster/ets`: the ETS tables of every node ranked by memory
  (bytes) or size (objects), largest first, each row with its node, owner
  (node-qualified pid and registered name), heir, type, protection and
  name; filtered by owner or by a substring of the name; paged with
  `next_cursor`. `per_node` gives each node's table count and total table
  memory.

  Cost on each node: one `:ets.info/1` per table (the table's header, never
  its contents), bounded by `max_tables` and a deadline below the node
  timeout, then a sort of the matching tables; only the best `limit` cross
  the network and are merged here in the Rust core. A node without
  ClusterScope answers too (agentless). See `ClusterScope.NodeViews.Ets`.
  """

  use ClusterScope.Operation, name: "ets_tables", requires: [:native]

  alias ClusterScope.NodeViews.{Ets, Ranking}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/ets",
      summary: "ETS tables of every node ranked by memory or size: owner, type, protection",
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
          values: Ets.sort_fields(),
          default: :memory,
          location: :query,
          description: "rank by memory (bytes) or size (objects), largest first"
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
          name: :owner,
          type: :pid,
          location: :query,
          description: "only the tables this process owns, e.g. 0.123.0@node"
        },
        %{
          name: :name,
          type: :string,
          min_length: 1,
          max_length: 255,
          location: :query,
          description: "only tables whose name contains this text"
        },
        %{
          name: :max_tables,
          type: :integer,
          min: 1,
          max: 100_000,
          default: 100_000,
          location: :query,
          description: "read at most this many tables on each node"
        }
      ],
      responses: %{200 => %{description: "a page of tables, with next_cursor and per_node"}}
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
  def execute(params), do: Ets.tables(params)
end
