defmodule ClusterScope.Agent do
  @moduledoc """
  The agent room's door: what this node computes about itself, for the
  nodes that ask.

  Every function here runs on the node it describes. Other nodes reach it
  only through `ClusterScope.Fanout` (in the protocol's version envelope,
  `ClusterScope.Protocol.serve/4`), so a peer of a version this node cannot
  talk with is refused by its door with a `:version_mismatch` node error,
  never answered in a format it does not read. This node calls the same
  functions directly. The node side of process queries is
  `ClusterScope.Agent.Processes` (and the collection machinery under it).

      ClusterScope.Agent.metadata()    # what the cluster state records of a node
      ClusterScope.Agent.facts()       # live facts for `node_info`
      ClusterScope.Agent.resources()   # latest health sample, monitor state, alerts
      ClusterScope.Agent.build_info()  # versions of OTP, Elixir, ClusterScope, core, protocol

  ## Cost and what it protects against

  Nothing here sends a message to another process, takes a lock held by a
  server, or walks the processes of the node: each call is a handful of
  `:erlang.system_info/1` reads, one `:erlang.memory/0`, or lookups in the
  health monitor's ETS table. A call therefore answers in microseconds
  even when ClusterScope's own servers are busy, stuck or restarting (the
  monitor's table outlives the monitor; a call made while it is not running
  answers `{:error, reason}`, never an exit), and it cannot grow with the
  size of the node. The answers are small maps of numbers and short
  strings, whatever the number of processes.
  """

  alias ClusterScope.Health

  @typedoc "What the cluster state records of a node when it joins (`metadata/0`)."
  @type metadata :: %{
          otp_release: String.t(),
          cluster_scope_version: String.t(),
          started_at_ms: integer()
        }

  @typedoc "A node's live facts, as `node_info` shows them (`facts/0`)."
  @type facts :: %{
          otp_release: String.t(),
          cluster_scope_version: String.t(),
          uptime_ms: non_neg_integer(),
          process_count: non_neg_integer(),
          process_limit: pos_integer(),
          port_count: non_neg_integer(),
          memory_bytes: %{atom() => non_neg_integer()},
          schedulers: pos_integer(),
          connected_nodes: [node()]
        }

  @doc """
  What `ClusterScope.Cluster.State` records of this node: its OTP release,
  ClusterScope version and start time (wall clock minus the VM's uptime).
  Asked once by each peer's cluster state when this node comes up.

  Cost: three reads of VM counters; no process contacted.
  """
  @spec metadata() :: metadata()
  def metadata do
    {uptime_ms, _} = :erlang.statistics(:wall_clock)
    Map.put(identity(), :started_at_ms, System.system_time(:millisecond) - uptime_ms)
  end

  @doc """
  This node's live facts for the `node_info` operation: what `metadata/0`
  says of its release, plus uptime, process and port counts with the
  process limit, memory by type (`:erlang.memory/0`), online schedulers
  and the nodes it is connected to.

  Cost: VM counters and one `:erlang.memory/0` (a read of the allocators'
  counters, not a walk of the processes); the connected list grows with
  the cluster, nothing else does.
  """
  @spec facts() :: facts()
  def facts do
    {uptime_ms, _} = :erlang.statistics(:wall_clock)

    Map.merge(identity(), %{
      uptime_ms: uptime_ms,
      process_count: :erlang.system_info(:process_count),
      process_limit: :erlang.system_info(:process_limit),
      port_count: :erlang.system_info(:port_count),
      memory_bytes: Map.new(:erlang.memory()),
      schedulers: :erlang.system_info(:schedulers_online),
      connected_nodes: Node.list()
    })
  end

  # The fields metadata/0 and facts/0 share: what runs here.
  defp identity do
    %{
      otp_release: List.to_string(:erlang.system_info(:otp_release)),
      cluster_scope_version: ClusterScope.version()
    }
  end

  @doc """
  This node's latest health sample, the state of its monitor (interval in
  force, throttling and why, skipped collectors, own cost), its active
  alerts and the thresholds in force: the answer of the `node_resources`
  operation. `{:error, reason}` (a sentence naming this node) when the
  health monitor is not running here.

  Cost: a few lookups in the monitor's ETS table; the sample itself was
  taken by the monitor, at its own (throttled) pace, not by this call.
  """
  @spec resources() :: {:ok, map()} | {:error, String.t()}
  def resources do
    if Health.Monitor.running?() do
      {:ok,
       %{
         node: node(),
         sample: Health.latest(),
         status: Health.status(),
         alerts: Health.alerts(),
         thresholds: Health.thresholds()
       }}
    else
      {:error, "ClusterScope's health monitor is not running on #{node()}"}
    end
  end

  @doc """
  The build of ClusterScope on this node: versions of OTP, Elixir,
  ClusterScope and its native core (or `{:error, :native_unavailable}`),
  and the protocol version it speaks with the oldest it understands
  (`ClusterScope.Protocol`, honouring its test-only override).

  Other nodes ask for it through `ClusterScope.build_info/0`, which every
  ClusterScope version answers the same way (the protocol's compatible
  subset, sent without the version envelope): that is how a peer of
  another version learns this node's. Cost: VM reads and one call into the
  native core; no side effect.
  """
  @spec build_info() :: ClusterScope.node_build()
  def build_info do
    %{
      node: node(),
      otp_release: List.to_string(:erlang.system_info(:otp_release)),
      elixir_version: System.version(),
      cluster_scope_version: ClusterScope.version(),
      protocol_version: ClusterScope.Protocol.version(),
      min_compatible_protocol: ClusterScope.Protocol.min_compatible(),
      native: ClusterScope.Native.build_info()
    }
  end
end
