defmodule ClusterScope.Application do
  @moduledoc """
  ClusterScope's OTP application.

  Start-up does cheap things only: validates the configuration
  (`ClusterScope.Config`), loads the native core (`ClusterScope.Native`; a
  failure is logged and tolerated), starts the supervision tree, and starts
  the HTTP endpoint when `http: [enabled: true]` (kept up by
  `ClusterScope.Web.ConfiguredEndpoint`). Nothing here can fail
  because of the environment: a missing NIF, a bad option or a port already
  in use is logged and degrades ClusterScope, never the host.

  Supervision tree (`ClusterScope.Supervisor`, one_for_one):

    * `ClusterScope.StateKeeper` - heir of the tables that hold critical
      state (event history, subscribers, thresholds and alerts, trace
      sessions, sandbox tombstones), handed back when their owner restarts
    * `ClusterScope.OperationSupervisor` - Task.Supervisor running operations
      (at most 64 at once)
    * `ClusterScope.Operation.Registry` - the operations served here
    * `ClusterScope.Protocol` - the protocol versions of peers (ETS), forgotten
      at nodeup and nodedown
    * the `:pg` scope `:cluster_scope`, which every node's agent joins
    * `ClusterScope.Cluster.Heartbeat` - heartbeats and phi-accrual detectors
    * `ClusterScope.Cluster.State` - members, matrix, classification, events
    * `ClusterScope.Cluster.Libcluster` - libcluster's telemetry (attached
      once `:telemetry` runs, whatever the start order) and its topologies
    * `ClusterScope.Mode` - multi_node, local_cluster or simulated
    * `ClusterScope.Agent.Processes.Snapshots` - the latest process snapshot of this
      node (and of agentless nodes read from here), and window starts,
      shared by callers
    * `ClusterScope.Trace.ControlWord` - trace control word bits of sessions
    * `ClusterScope.Trace.Sessions` - the trace sessions created from this node
    * `ClusterScope.Logs` - the ring of this node's recent log events and its
      `:logger` handler
    * `ClusterScope.Health.Monitor` - samples, alerts, baselines, self-protection
    * `ClusterScope.Web.Admission` - places per lane and per client of the
      HTTP endpoints (429 past them)
    * `ClusterScope.Web.StreamHub` - alert history and wake-ups of the live
      streams (`GET /api/v1/stream`)
    * `:pg` scope `:cluster_scope_sandboxes` (sandbox parts join it; they are
      linked to no supervisor and stop with `ClusterScope.Supervisor`)
      (this node's parts of sandboxes) and `ClusterScope.Sandbox.Manager`
    * `ClusterScope.Web.EndpointSupervisor` - HTTP endpoints
    * `ClusterScope.Web.ConfiguredEndpoint` - starts the configured endpoint
      (`http: [enabled: true]`) and starts it again when it goes away
    * `ClusterScope.NodeViews.CodeDrift.Watch` - code drift that lasts
      (checked by one node of the cluster), for the health monitor
    * `ClusterScope.NodeViews.SupervisorReports` - the bounded logger handler
      of supervisor reports (installed at its start, removed at its stop)
  """

  use Application

  @impl true
  def start(_type, _args) do
    ClusterScope.Config.load()
    # Load the NIF now so a problem is logged at boot, not at first use.
    Code.ensure_loaded(ClusterScope.Native)

    config = ClusterScope.Config

    children = [
      # First: it holds the critical state of the others while they restart.
      ClusterScope.StateKeeper,
      {Task.Supervisor, name: ClusterScope.OperationSupervisor, max_children: 64},
      ClusterScope.Operation.Registry,
      ClusterScope.Metrics.OperationLatency,
      ClusterScope.Protocol,
      %{id: :pg, start: {:pg, :start_link, [ClusterScope.Cluster.Heartbeat.scope()]}},
      {ClusterScope.Cluster.Heartbeat,
       interval_ms: config.get(:heartbeat_interval_ms),
       phi_threshold: config.get(:phi_threshold) * 1.0},
      {ClusterScope.Cluster.State,
       quorum: config.get(:quorum), interval_ms: config.get(:heartbeat_interval_ms)},
      ClusterScope.Cluster.Libcluster,
      ClusterScope.Mode,
      ClusterScope.Agent.Processes.Snapshots,
      ClusterScope.Trace.ControlWord,
      ClusterScope.Trace.Sessions,
      ClusterScope.Logs,
      {ClusterScope.Health.Monitor, interval_ms: config.get(:health_interval_ms)},
      ClusterScope.Web.Admission,
      ClusterScope.Web.StreamHub,
      %{id: :pg_sandboxes, start: {:pg, :start_link, [ClusterScope.Sandbox.Group.scope()]}},
      ClusterScope.Sandbox.Manager,
      {DynamicSupervisor, name: ClusterScope.Web.EndpointSupervisor, strategy: :one_for_one},
      ClusterScope.NodeViews.CodeDrift.Watch,
      ClusterScope.Web.ConfiguredEndpoint,
      ClusterScope.NodeViews.SupervisorReports
    ]

    with {:ok, sup} <-
           Supervisor.start_link(children,
             strategy: :one_for_one,
             name: ClusterScope.Supervisor,
             # A release starts its dependencies as permanent applications:
             # past its restart intensity this supervisor would take the
             # host node down with it. OTP's default (3 in 5 s) is for the
             # host to choose; a debugging tool must tolerate more of its own
             # crashes than that (each child keeps its critical state in
             # ClusterScope.StateKeeper across restarts).
             max_restarts: 50,
             max_seconds: 10
           ) do
      ClusterScope.Cluster.GlobalWatcher.install()
      {:ok, sup}
    end
  end
end
