defmodule ClusterScope.Operations.GetTraceEvents do
  @moduledoc """
  `GET /api/v1/trace/sessions/:id/events?cursor=&limit=`: the next events
  of a session, from every traced node, merged by time, each with its node.
  Pass `next_cursor` back for the following page; `missed` counts events a
  node's ring overwrote before they were read. A node that went away is in
  `node_errors`.
  """

  use ClusterScope.Operation, name: "get_trace_events", scope: :sensitive

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/trace/sessions/:id/events",
      summary: "Events of a trace session, merged across nodes, paged",
      parameters: [
        ClusterScope.Trace.id_param(),
        %{
          name: :cursor,
          type: :string,
          max_length: 4_000,
          location: :query,
          description: "next_cursor of the previous page"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1_000,
          default: 100,
          location: :query,
          description: "events per page"
        }
      ],
      responses: %{200 => %{description: "events and next_cursor"}}
    }
  end

  @impl true
  def execute(%{id: id, limit: limit} = params),
    do: ClusterScope.Trace.events(id, params[:cursor], limit)
end
