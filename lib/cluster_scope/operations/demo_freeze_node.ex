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

  alias ClusterScope.Web.Demo

  @impl true
  def rest_config,
    do: Demo.fault_rest_config("freeze", "Demo mode: freeze a peer of the demo cluster")

  @impl true
  def execute(%{node: node}), do: Demo.run_fault(:freeze, node)
end
