defmodule ClusterScope.Operations.DemoCutNode do
  @moduledoc """
  `POST /api/v1/demo/nodes/:node/cut`: cuts a peer of the demo cluster off the network: it drops every distribution link and refuses new ones (a wrong cookie for every other node), while its OS process keeps running. Detection sees its links close and every reconnection refused until the heal.

  Only in demo mode (a node started by `make demo`,
  `ClusterScope.Web.Demo`): anywhere else it answers `forbidden` and
  does nothing. Control scope: needs the admin token over HTTP. Only the
  demo's own peers can be named (`not_found` otherwise; the name is
  compared as text, no atom is created).

  Cost: one call to the demo server and a signal or a call over the peer's
  standard I/O: milliseconds.
  """

  use ClusterScope.Operation, name: "demo_cut_node", timeout: 40_000

  alias ClusterScope.Web.Demo

  @impl true
  def rest_config, do: Demo.fault_rest_config("cut", "Demo mode: cut a peer of the demo cluster")

  @impl true
  def execute(%{node: node}), do: Demo.run_fault(:cut, node)
end
