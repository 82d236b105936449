defmodule ClusterScope.Application do
  @moduledoc """
  ClusterScope's OTP application.

  Start-up does cheap things only: validates the configuration
  (`ClusterScope.Config`), loads the native core (`ClusterScope.Native`; a
  failure is logged and tolerated), starts the supervision tree, and starts
  the HTTP endpoint when `http: [enabled: true]`. Nothing here can fail
  because of the environment: a missing NIF, a bad option or a port already
  in use is logged and degrades ClusterScope, never the host.

  Supervision tree (`ClusterScope.Supervisor`, one_for_one):

    * `ClusterScope.OperationSupervisor` - Task.Supervisor running operations
      (at most 64 at once)
    * `ClusterScope.Operation.Registry` - the operations served here
    * the `:pg` scope `:cluster_scope`, which every node's agent joins
    * `ClusterScope.Cluster.Heartbeat` - heartbeats and phi-accrual detectors
    * `ClusterScope.Cluster.State` - members, matrix, classification, events
    * `ClusterScope.Cluster.Libcluster` - libcluster's telemetry (attached
      once `:telemetry` runs, whatever the start order) and its topologies
    * `ClusterScope.Mode` - multi_node, local_cluster or simulated
    * `ClusterScope.Procs.Snapshots` - the latest process snapshot of this
      node (and of agentless nodes read from here), and window starts,
      shared by callers
    * `ClusterScope.Trace.ControlWord` - trace control word bits of sessions
    * `ClusterScope.Trace.TracerSupervisor` - the tracers of trace sessions
      on this node (at most 64)
    * `ClusterScope.Trace.Sessions` - the trace sessions created from this node
    * `ClusterScope.Health.Monitor` - samples, alerts, baselines, self-protection
    * `ClusterScope.Web.Admission` - places per lane and per client of the
      HTTP endpoints (429 past them)
    * `ClusterScope.Web.StreamHub` - alert history and wake-ups of the live
      streams (`GET /api/v1/stream`)
    * `:pg` scope `:cluster_scope_sandboxes`, `ClusterScope.Sandbox.NodeSupervisor`
      (this node's parts of sandboxes) and `ClusterScope.Sandbox.Manager`
    * `ClusterScope.Web.EndpointSupervisor` - HTTP endpoints
  """

  use Application

  require Logger

  @impl true
  def start(_type, _args) do
    ClusterScope.Config.load()
    # Load the NIF now so a problem is logged at boot, not at first use.
    Code.ensure_loaded(ClusterScope.Native)

    config = ClusterScope.Config

    children = [
      {Task.Supervisor, name: ClusterScope.OperationSupervisor, max_children: 64},
      ClusterScope.Operation.Registry,
      ClusterScope.Metrics.OperationLatency,
      %{id: :pg, start: {:pg, :start_link, [ClusterScope.Cluster.Heartbeat.scope()]}},
      {ClusterScope.Cluster.Heartbeat,
       interval_ms: config.get(:heartbeat_interval_ms),
       phi_threshold: config.get(:phi_threshold) * 1.0},
      {ClusterScope.Cluster.State,
       quorum: config.get(:quorum), interval_ms: config.get(:heartbeat_interval_ms)},
      ClusterScope.Cluster.Libcluster,
      ClusterScope.Mode,
      ClusterScope.Procs.Snapshots,
      ClusterScope.Trace.ControlWord,
      {DynamicSupervisor,
       name: ClusterScope.Trace.TracerSupervisor, strategy: :one_for_one, max_children: 64},
      ClusterScope.Trace.Sessions,
      {ClusterScope.Health.Monitor, interval_ms: config.get(:health_interval_ms)},
      ClusterScope.Web.Admission,
      ClusterScope.Web.StreamHub,
      %{id: :pg_sandboxes, start: {:pg, :start_link, [ClusterScope.Sandbox.Group.scope()]}},
      {DynamicSupervisor, name: ClusterScope.Sandbox.NodeSupervisor, strategy: :one_for_one},
      ClusterScope.Sandbox.Manager,
      {DynamicSupervisor, name: ClusterScope.Web.EndpointSupervisor, strategy: :one_for_one}
    ]

    with {:ok, sup} <-
           Supervisor.start_link(children, strategy: :one_for_one, name: ClusterScope.Supervisor) do
      ClusterScope.Cluster.GlobalWatcher.install()
      start_http(ClusterScope.Config.get(:http))
      {:ok, sup}
    end
  end

  defp start_http(http) do
    if http[:enabled] do
      case ClusterScope.Web.Endpoint.start(http) do
        {:ok, endpoint} ->
          Logger.info("ClusterScope HTTP API on #{endpoint.url}")

        {:error, reason} ->
          Logger.error(
            "ClusterScope could not start its HTTP endpoint on port #{http[:port]}: " <>
              "#{inspect(reason)}. The rest of ClusterScope runs without it."
          )
      end
    end
  end
end
