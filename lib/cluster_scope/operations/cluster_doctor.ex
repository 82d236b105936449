defmodule ClusterScope.Operations.ClusterDoctor do
  @moduledoc """
  `GET /api/v1/cluster/doctor`: every node's setup checked for what makes a
  debugging tool dangerous or blind (an endpoint exposed without a token,
  unlimited tracing, `prevent_overlapping_partitions` off, ...), and the
  cluster for nodes without ClusterScope, other versions and Horde members
  that do not match; each finding with its remediation. See
  `ClusterScope.Doctor` for the list.

  Cost: configuration reads on every agent node and one build-info call per
  node, in parallel, bounded by the node timeout. Changes nothing.
  """

  use ClusterScope.Operation, name: "cluster_doctor"

  alias ClusterScope.Doctor

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/doctor",
      summary: "Check every node's setup and the cluster's, with remediations",
      parameters: [],
      responses: %{200 => %{description: "status and findings"}}
    }
  end

  @impl true
  def execute(_params) do
    {answers, node_errors} = ClusterScope.Health.agent_call(Doctor, :local_findings, [])
    findings = Enum.flat_map(answers, &elem(&1, 1)) ++ Doctor.cluster_findings()

    findings =
      Enum.sort_by(
        findings,
        &{if(&1.severity == :critical, do: 0, else: 1), to_string(&1.node), &1.id}
      )

    status =
      cond do
        Enum.any?(findings, &(&1.severity == :critical)) -> :critical
        findings != [] or node_errors != [] -> :warning
        true -> :ok
      end

    {:ok,
     %{
       status: status,
       findings: findings,
       checked_nodes: Enum.map(answers, &elem(&1, 0)),
       node_errors: node_errors
     }}
  end
end
