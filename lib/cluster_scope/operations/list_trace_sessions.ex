defmodule ClusterScope.Operations.ListTraceSessions do
  @moduledoc """
  `GET /api/v1/trace/sessions`: the trace sessions created from this node,
  newest first, paged (`limit`, `offset`), each with its target, limits,
  status and, per node, the events seen, kept and dropped (by rate, by
  per-process limit, after the limit), pauses, the effective rate and the
  estimated overhead. One call to each tracer.
  """

  use ClusterScope.Operation, name: "list_trace_sessions", scope: :sensitive

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/trace/sessions",
      summary: "Trace sessions created from this node, with their counters",
      parameters: [
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 100,
          default: 20,
          location: :query,
          description: "sessions per page"
        },
        %{
          name: :offset,
          type: :integer,
          min: 0,
          max: 1_000,
          default: 0,
          location: :query,
          description: "sessions to skip"
        }
      ],
      responses: %{200 => %{description: "the sessions"}}
    }
  end

  @impl true
  def execute(%{limit: limit, offset: offset}) do
    {page, total} = ClusterScope.Trace.list(offset, limit)
    {:ok, %{sessions: page, total: total, offset: offset, limit: limit}}
  end
end
