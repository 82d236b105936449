defmodule ClusterScope.Operations.ProcessDistribution do
  @moduledoc """
  `GET /api/v1/cluster/processes/distribution`: how many processes each
  application has on each node, and their memory: the data of the
  dashboard's heat map (`cells`, one per node and application), with each
  node's totals (`per_node`).

  Each node sends its own counts by application; no process list crosses
  the network. With no filter or an application filter, a node reads only
  each process's memory and group leader (`ClusterScope.Agent.Processes.Grouped`);
  other filters read every process whole, as `process_list` does.
  """

  use ClusterScope.Operation, name: "process_distribution", timeout: 45_000

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/processes/distribution",
      summary: "Process counts and memory per node and application (heat map)",
      parameters: ClusterScope.Procs.Params.filters(),
      responses: %{200 => %{description: "nodes, applications and cells"}}
    }
  end

  @impl true
  def execute(params) do
    # Simulated mode: virtual nodes' counts are in (see Procs), and marked.
    with {:ok, data} <- ClusterScope.Procs.distribution(params),
         do: {:ok, ClusterScope.Simulator.Data.mark(data)}
  end
end
