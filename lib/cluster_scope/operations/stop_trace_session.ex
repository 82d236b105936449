defmodule ClusterScope.Operations.StopTraceSession do
  @moduledoc """
  `DELETE /api/v1/trace/sessions/:id`: switches a session's tracing off on
  every node. Its events stay readable for 10 minutes. Mutating: needs the
  token over HTTP.
  """

  use ClusterScope.Operation, name: "stop_trace_session"

  @impl true
  def rest_config do
    %{
      method: :delete,
      path: "/api/v1/trace/sessions/:id",
      summary: "Stop a trace session everywhere",
      parameters: [
        %{
          name: :id,
          type: :string,
          required: true,
          max_length: 64,
          location: :path,
          description: "the session id"
        }
      ],
      responses: %{200 => %{description: "the stopped session"}}
    }
  end

  @impl true
  def execute(%{id: id}), do: ClusterScope.Trace.stop(id)
end
