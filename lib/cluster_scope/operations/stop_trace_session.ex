defmodule ClusterScope.Operations.StopTraceSession do
  @moduledoc """
  `DELETE /api/v1/trace/sessions/:id`: switches a session's tracing off on
  every node. Its events stay readable for 10 minutes. Mutating: needs the
  token over HTTP.
  """

  # Anywhere: stopping a trace must work on either side. Idempotent.
  use ClusterScope.Operation,
    name: "stop_trace_session",
    partition: :anywhere,
    idempotent: true

  @impl true
  def rest_config do
    %{
      method: :delete,
      path: "/api/v1/trace/sessions/:id",
      summary: "Stop a trace session everywhere",
      parameters: [
        ClusterScope.Trace.id_param()
      ],
      responses: %{200 => %{description: "the stopped session"}}
    }
  end

  @impl true
  def execute(%{id: id}), do: ClusterScope.Trace.stop(id)
end
