defmodule ClusterScope.Protocol do
  @moduledoc """
  The protocol version ClusterScope agents speak to each other, what each
  peer speaks, and the node-side door every agent call comes through.

  A node speaks protocol `version/0` and still understands every version
  from `min_compatible/0` up to it. Version 2 is the first that carries a
  version on every exchange: heartbeats are
  `{:cs_hb, {version, min}, from, ...}` (version 1 builds sent
  `{:cs_heartbeat, from, version, gossip}`, and the unversioned builds just
  before 2 the same tuple as 2 without `{version, min}`), and every agent call goes
  through `ClusterScope.Fanout`, which sends it as `serve(version, m, f, a)`
  to this module on the peer. Version 3 moved the node side into the
  agent room (`ClusterScope.Agent`, `ClusterScope.Agent.Processes`): what
  a peer calls changed names, so 3 understands only 3 and a build of
  version 2 is a mismatched peer (read agentless, refused by the door)
  rather than a node answering `undef`.

  ## Two nodes are compatible when one understands the other

  `speak/2` picks what to speak to a peer of `{version, min}`: our own
  version when the peer understands it (`min <= ours <= version`: a newer
  peer), the peer's when we understand it (`our min <= its <= ours`: an
  older peer; the caller must then use only what that version has), else
  nothing: the peer is *mismatched*. The rule is symmetric, so two nodes
  always agree on whether they are compatible, and a mismatched peer is
  left out on both sides at once:

    * heartbeats: each still sends the other its beats, but reads only the
      version in them (so a change of version is learnt by both sides,
      whichever moves first); neither counts the other as an agent
      (`ClusterScope.Cluster.Heartbeat.agent_nodes/0`), keeps a detector
      for it or lists it in its view: it is treated like a node without
      ClusterScope, not as a node that went silent, so the partition
      classification stays right;
    * calls: `ClusterScope.Fanout` does not call its agent; the answer has a
      node error with status `:version_mismatch` naming both versions
      (never a crash, never an answer of another format read as ours);
    * process reads go agentless (`ClusterScope.Procs.Agentless`: its row
      reader is OTP-only code versioned by function name, `stream_v1`), and
      `ClusterScope.build_info/0` is answered by any version: the
      *compatible subset* (`portable?/3`).

  ## How versions are learnt

  Each beat carries its sender's `{version, min}`; a refusal by a peer's
  door carries the peer's. Both are cached here per node in an ETS table
  (`peer/1`, one lookup per call) and dropped at every nodeup and nodedown
  (a node that comes back may run another release). A beat of another
  format (`{:cs_heartbeat, ...}`, an unversioned `{:cs_hb, ...}`) marks its
  sender as version 1 and is logged once, never crashing the heartbeat.

  ## Test-only hook

  `put_test_version/2` makes this node report and speak another version
  (persistent term; `ClusterScope.build_info/0` and the beats honour it),
  so a test can run a real peer "of another release" without building one.
  It is for tests: never call it in production (every peer would treat the
  node as mismatched). `put_test_version(nil)` restores the build's version.

  ## Cost

  `version/0` is a persistent term read; `peer/1` one ETS lookup;
  `serve/4` one comparison before the call it wraps.
  """

  use GenServer

  require Logger

  # Version 2: versioned beats ({:cs_hb, {v, min}, ...}) and every agent
  # call through serve/4. Version 3: the node side moved into the agent
  # room (ClusterScope.Agent, ClusterScope.Agent.Processes), names a
  # version 2 build does not have. Equal to the core's PROTOCOL_VERSION and
  # MIN_COMPATIBLE_PROTOCOL (a test checks the version).
  @version 3
  @min_compatible 3
  @override {__MODULE__, :test_version}
  @table :cluster_scope_protocol_peers

  # Called on any node whatever its version: the compatible subset.
  # Rows and Redact are loaded onto agentless nodes and versioned by
  # function name (stream_v1, info_v2, ...).
  @portable_modules [
    ClusterScope.Agent.Processes.Rows,
    ClusterScope.Redact,
    ClusterScope.Protocol
  ]

  @typedoc "What a peer speaks: its version and the oldest it understands."
  @type peer_version :: {pos_integer(), pos_integer()}

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The protocol version this node speaks (the build's, or the test override)."
  @spec version() :: pos_integer()
  def version do
    case :persistent_term.get(@override, nil) do
      {version, _min} -> version
      nil -> @version
    end
  end

  @doc "The oldest protocol version this node understands."
  @spec min_compatible() :: pos_integer()
  def min_compatible do
    case :persistent_term.get(@override, nil) do
      {_version, min} -> min
      nil -> @min_compatible
    end
  end

  @doc "This node's `{version, min_compatible}`, as carried by its beats."
  @spec own() :: peer_version()
  def own, do: {version(), min_compatible()}

  @doc """
  Test-only hook (see the module doc): this node reports and speaks
  `version`, understanding down to `min` (default: `version`). `nil`
  restores the build's version. Peers learn it from the next beat.
  """
  @spec put_test_version(pos_integer() | nil, pos_integer() | nil) :: :ok
  def put_test_version(version, min \\ nil)
  def put_test_version(nil, _), do: put_override(nil)

  def put_test_version(version, min) when is_integer(version) and version > 0,
    do: put_override({version, min || version})

  defp put_override(nil) do
    :persistent_term.erase(@override)
    :ok
  end

  defp put_override(value), do: :persistent_term.put(@override, value)

  @doc """
  The version to speak to a peer of `{version, min}`: ours when it
  understands ours, its own when we understand it, else `nil` (mismatched).
  Symmetric: two nodes agree on whether they can talk.
  """
  @spec speak(peer_version(), peer_version()) :: pos_integer() | nil
  def speak({peer, peer_min}, {own, own_min} \\ own()) do
    cond do
      peer_min <= own and own <= peer -> own
      own_min <= peer and peer <= own -> peer
      true -> nil
    end
  end

  @doc "Whether this node accepts a call spoken in `version` (`serve/4`'s check)."
  @spec accepts?(term()) :: boolean()
  def accepts?(version) when is_integer(version),
    do: min_compatible() <= version and version <= version()

  def accepts?(_), do: false

  @doc """
  The node-side door of every agent call: runs `apply(m, f, a)` when the
  caller's `version` is one this node understands, else raises
  `{:cluster_scope_protocol_mismatch, {version, min}}` with this node's
  versions (the caller's `ClusterScope.Fanout` turns it into a
  `:version_mismatch` node error and caches the versions).
  """
  @spec serve(term(), module(), atom(), list()) :: term()
  def serve(version, m, f, a) when is_atom(m) and is_atom(f) and is_list(a) do
    if accepts?(version),
      do: apply(m, f, a),
      else: :erlang.error({:cluster_scope_protocol_mismatch, own()})
  end

  @doc """
  Whether a call is in the compatible subset: answered the same by every
  version (OTP modules, functions versioned by name such as
  `ClusterScope.Agent.Processes.Rows.stream_v1/3` or the node views' `*.Local` readers
  loaded onto agentless nodes, `ClusterScope.Redact`,
  `ClusterScope.build_info/0`), so it goes out without the version envelope.
  """
  @spec portable?(module(), atom(), list()) :: boolean()
  def portable?(ClusterScope, :build_info, []), do: true
  def portable?(m, _f, _a) when m in @portable_modules, do: true

  def portable?(m, f, _a) when is_atom(m) do
    case Atom.to_string(m) do
      "Elixir.ClusterScope." <> _ -> versioned_name?(f)
      "Elixir.ClusterScope" -> versioned_name?(f)
      _ -> true
    end
  end

  # A function named `..._v<N>` is its own version (the OTP-only modules
  # loaded onto agentless nodes: `Rows.stream_v1`, `Ets.Local.tables_v1`, ...):
  # whoever exports it answers it the same way.
  defp versioned_name?(f) when is_atom(f) do
    case :binary.matches(Atom.to_string(f), "_v") do
      [] ->
        false

      matches ->
        name = Atom.to_string(f)
        {at, 2} = List.last(matches)
        digits = binary_part(name, at + 2, byte_size(name) - at - 2)
        digits != "" and digits =~ ~r/\A[0-9]+\z/
    end
  end

  defp versioned_name?(_), do: false

  @doc "What this node knows `node` speaks: `{version, min}` or `nil`."
  @spec peer(node()) :: peer_version() | nil
  def peer(node) do
    case :ets.lookup(@table, node) do
      [{^node, version, min}] -> {version, min}
      [] -> nil
    end
  rescue
    ArgumentError -> nil
  end

  @doc """
  `:compatible`, `:unknown`, or `{:mismatch, {version, min}}` for `node`
  (this node is always compatible).
  """
  @spec status(node()) :: :compatible | :unknown | {:mismatch, peer_version()}
  def status(node) when node == node(), do: :compatible

  def status(node) do
    case peer(node) do
      nil -> :unknown
      pv -> if speak(pv), do: :compatible, else: {:mismatch, pv}
    end
  end

  @doc "Whether `node` is known to speak a version this node cannot talk with."
  @spec mismatched?(node()) :: boolean()
  def mismatched?(node), do: match?({:mismatch, _}, status(node))

  @doc """
  Records what `node` speaks (from a beat or a refusal). Logs a warning when
  it is a version this node cannot talk with, once per change.
  """
  @spec note_peer(node(), peer_version()) :: :ok
  def note_peer(node, {version, min} = pv)
      when is_atom(node) and is_integer(version) and is_integer(min) do
    if node != node() and peer(node) != pv and room?() do
      try do
        :ets.insert(@table, {node, version, min})
      rescue
        ArgumentError -> :ok
      end

      if speak(pv) == nil do
        Logger.warning(
          "ClusterScope: #{node} speaks protocol #{version} (understands #{min}..#{version}); " <>
            "this node speaks #{version()} (understands #{min_compatible()}..#{version()}): " <>
            "its agent is not called and its beats are ignored; processes are read agentless"
        )
      end
    end

    :ok
  end

  def note_peer(_node, _pv), do: :ok

  # Bounded: entries go at nodeup and nodedown, and names only come from
  # nodes that sent a beat or answered a call.
  @max_peers 10_000
  defp room? do
    case :ets.info(@table, :size) do
      :undefined -> false
      size -> size < @max_peers
    end
  end

  @doc """
  Every peer whose version is known here: `[%{node, version, min, compatible}]`,
  sorted by node.
  """
  @spec peers() :: [map()]
  def peers do
    :ets.tab2list(@table)
    |> Enum.sort()
    |> Enum.map(fn {node, version, min} ->
      %{node: node, version: version, min: min, compatible: speak({version, min}) != nil}
    end)
  rescue
    ArgumentError -> []
  end

  @doc "The connected nodes known to speak a version this node cannot talk with."
  @spec mismatched_nodes() :: [node()]
  def mismatched_nodes do
    connected = Node.list()
    for %{node: n, compatible: false} <- peers(), n in connected, do: n
  end

  # -- server: owns the table, forgets a node at nodeup and nodedown ---------

  @impl true
  def init(_opts) do
    :ets.new(@table, [:named_table, :public, :set, read_concurrency: true])
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    {:ok, %{}}
  end

  @impl true
  def handle_info({:nodeup, node, _}, state), do: forget(node, state)
  def handle_info({:nodedown, node, _}, state), do: forget(node, state)
  def handle_info(_other, state), do: {:noreply, state}

  defp forget(node, state) do
    :ets.delete(@table, node)
    {:noreply, state}
  end
end
