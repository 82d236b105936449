defmodule ClusterScope.Operations.DemoHealNode do
  @moduledoc """
  `POST /api/v1/demo/nodes/:node/heal`: heals a peer of the demo cluster: `SIGCONT`, its cookies back and connections to every node of the demo. Detection then sees the heal.

  Only in demo mode (a node started by `make demo`,
  `ClusterScope.Web.Demo`): anywhere else it answers `forbidden` and
  does nothing. Control scope: needs the admin token over HTTP. Only the
  demo's own peers can be named (`not_found` otherwise; the name is
  compared as text, no atom is created).

  Cost: one call to the demo server and a signal or a call over the peer's
  standard I/O: milliseconds.
  """

  use ClusterScope.Operation, name: "demo_heal_node", timeout: 40_000

  alias ClusterScope.Web.Demo

  @impl true
  def rest_config,
    do: Demo.fault_rest_config("heal", "Demo mode: heal a peer of the demo cluster")

  @impl true
  def execute(%{node: node}), do: Demo.run_fault(:heal, node)
end
