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
      parameters:
        Ranking.parameters(
          sort_fields: Ets.sort_fields(),
          sort_default: :memory,
          sort_description: "rank by memory (bytes) or size (objects), largest first",
          extra: [
            %{
              name: :owner,
              type: :pid,
              location: :query,
              description: "only the tables this process owns, e.g. 0.123.0@node"
            }
          ],
          name_description: "only tables whose name contains this text",
          max: {:max_tables, 100_000},
          max_description: "read at most this many tables on each node"
        ),
      responses: %{200 => %{description: "a page of tables, with next_cursor and per_node"}}
    }
  end

  @doc false
  def check_params(params), do: Ranking.check_cursor(params)

  @impl true
  def execute(params), do: Ets.tables(params)
end
