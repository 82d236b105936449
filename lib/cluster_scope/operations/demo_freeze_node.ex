defmodule ClusterScope.Operations.DemoFreezeNode do
  @moduledoc """
  `POST /api/v1/demo/nodes/:node/freeze`: freezes a peer of the demo cluster: `SIGSTOP` of its OS process. Its links stay open but nothing answers, as a node stuck in a long GC or a paused VM.

  Only in demo mode (a node started by `make demo`,
  `ClusterScope.Web.Demo`): anywhere else it answers `forbidden` and
  does nothing. Control scope: needs the admin token over HTTP. Only the
  demo's own peers can be named (`not_found` otherwise; the name is
  compared as text, no atom is created).

  Cost: one call to the demo server and a signal or a call over the peer's
  standard I/O: milliseconds.
  """

  use ClusterScope.Operation, name: "demo_freeze_node", timeout: 40_000

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/demo/nodes/:node/freeze",
      summary: "Demo mode: freeze a peer of the demo cluster",
      parameters: [
        %{
          name: :node,
          type: :string,
          required: true,
          max_length: 255,
          location: :path,
          description: "the peer's node name"
        }
      ],
      responses: %{
        200 => %{description: "the peer and the demo's faults"},
        403 => %{description: "forbidden: this node is not in demo mode"},
        404 => %{description: "not a peer of the demo"}
      }
    }
  end

  @impl true
  def execute(%{node: node}) do
    case ClusterScope.Web.Demo.fault(:freeze, node) do
      {:ok, result} -> {:ok, result}
      {:error, :not_demo} -> {:error, ClusterScope.Web.Demo.not_demo()}
      {:error, _} = error -> error
    end
  end
end
