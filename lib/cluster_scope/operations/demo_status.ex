defmodule ClusterScope.Operations.DemoStatus do
  @moduledoc """
  `GET /api/v1/demo`: whether this node is in demo mode (started by `make
  demo`, `ClusterScope.Web.Demo`) and, if so, its peers with the fault each
  one has (`none`, `cut`, `frozen`) and its sandbox. The dashboard shows
  the cut/freeze/heal buttons only when `active` is true.

  Cost: one call to the demo server when it runs, nothing otherwise.
  """

  use ClusterScope.Operation, name: "demo_status"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/demo",
      summary: "Demo mode: on or off, the demo's peers and their faults",
      parameters: [],
      responses: %{200 => %{description: "active, and the peers when active"}}
    }
  end

  @impl true
  def execute(_params) do
    if ClusterScope.Web.Demo.active?() do
      case ClusterScope.Web.Demo.info() do
        %{} = info -> {:ok, Map.put(info, :active, true)}
        {:error, _} -> {:ok, %{active: false, peers: []}}
      end
    else
      {:ok, %{active: false, peers: []}}
    end
  end
end
