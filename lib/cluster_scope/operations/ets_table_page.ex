defmodule ClusterScope.Operations.EtsTablePage do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node/ets/:table/page`: one bounded page of
  the objects of one public or protected ETS table on one node, redacted.

  Sensitive: a table holds whatever the host put there (sessions, tokens,
  credentials), so this needs the admin token, and every object is
  redacted on the table's node (its cookies, the endpoint's tokens, values
  under `redact_keys`) before it is printed, depth-limited and cut at
  4 KiB. `table` is the table's `id` as `ets_tables` lists it (the name of
  a named table, else `#Ref<...>`, URL-encoded); it is found by comparison
  with the node's tables, never turned into an atom. A private table, a
  table that does not exist and a stale cursor are errors naming the field.

  Cost on the node: at most `limit` key steps (`:ets.first/next`) and
  lookups on that one table under a safe fixation for the duration of the
  call; never `tab2list` or a whole-table match. `next_cursor` carries the
  last key read (omitted, with `cursor_note`, when that key holds a secret
  or is too large). See `ClusterScope.NodeViews.Ets.Local.page_v1/4`.
  """

  use ClusterScope.Operation, name: "ets_table_page", scope: :sensitive

  alias ClusterScope.NodeViews.Ets

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node/ets/:table/page",
      summary: "One bounded, redacted page of one public or protected ETS table",
      parameters: [
        %{
          name: :node,
          type: :node,
          required: true,
          location: :path,
          description: "the table's node"
        },
        %{
          name: :table,
          type: :string,
          required: true,
          min_length: 1,
          max_length: 300,
          location: :path,
          description: "the table's id as ets_tables lists it (name, or #Ref<...>)"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 500,
          default: 50,
          location: :query,
          description: "objects per page"
        },
        %{
          name: :cursor,
          type: :string,
          max_length: 1000,
          location: :query,
          description: "next_cursor of the previous page"
        }
      ],
      responses: %{200 => %{description: "a page of printed, redacted objects"}}
    }
  end

  @impl true
  def execute(params) do
    Ets.page(params.node, params.table, Map.get(params, :cursor), params.limit)
  end
end
