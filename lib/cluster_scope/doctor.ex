defmodule ClusterScope.Doctor do
  @moduledoc """
  Checks a node's setup, and the cluster's, for the mistakes that make a
  debugging tool dangerous or blind, and says how to fix each one
  (`cluster_doctor`, `mix cluster_scope.doctor`).

  On every node (`local_findings/0`):

    * `endpoint_exposed_without_token` (critical) - an HTTP endpoint listens
      beyond loopback with no admin token; `endpoint_reads_open` (warning) -
      beyond loopback with no `read_token`: anyone who reaches the port reads
      the cluster's topology, processes and health
    * `heartbeats_off_default_ticktime` (warning) - heartbeats switched off
      with the default `net_ticktime`: silent nodes and partitions show only
      after 45-75 s
    * `tracing_unlimited` (warning) - in production, tracing on with a
      `trace_max_rate` above 10,000 events/s per node
    * `dangerous_actions_allowed`, `mode_switch_allowed` (warning) - in
      production, `allow_dangerous_actions` or `allow_mode_switch` on
    * `short_net_ticktime` (warning) - in production, a tick under 10 s:
      Erlang disconnects nodes during long pauses (GC, I/O), which
      ClusterScope's heartbeats detect without it
    * `overlapping_partitions_allowed` (warning) -
      `prevent_overlapping_partitions` is off: after a partition, `global`
      keeps nodes that no longer see each other connected to a third
    * `config_errors` (warning) - options that were invalid and replaced by
      their defaults
    * `native_unavailable` (critical) - the Rust core did not load

  On the node asked (`cluster_findings/0`):

    * `clusterscope_missing` (warning) - connected nodes without a
      ClusterScope agent (seen agentless only)
    * `version_mismatch` (warning) - agents running another ClusterScope or
      protocol version than this node
    * `horde_members_mismatch` (warning, with Horde) - Horde members not
      connected, or connected nodes that are not members

  ## Cost

  Configuration reads and one `node_build_info` per agent node (parallel,
  bounded by the node timeout); with Horde, one `horde_cluster_members`.
  Nothing is changed.
  """

  alias ClusterScope.Config

  @typedoc "One finding."
  @type finding :: %{
          id: atom(),
          severity: :warning | :critical,
          node: node(),
          message: String.t(),
          remediation: String.t()
        }

  @doc "The findings about this node's own setup (run on every node)."
  @spec local_findings() :: {:ok, [finding()]}
  def local_findings do
    findings =
      endpoint_findings() ++
        heartbeats_off() ++
        production_findings(Config.profile()) ++
        overlapping_partitions() ++ config_errors() ++ native()

    {:ok, findings}
  end

  @doc "The findings only a view of the whole cluster shows (run on the node asked)."
  @spec cluster_findings() :: [finding()]
  def cluster_findings do
    # Agents of a protocol version this node cannot talk with are left out
    # of agent_nodes/0 (ClusterScope.Protocol): they run ClusterScope, at
    # another version.
    agents =
      Enum.uniq(
        ClusterScope.Cluster.Heartbeat.agent_nodes() ++ ClusterScope.Protocol.mismatched_nodes()
      )

    missing_agents(agents) ++ versions(agents) ++ horde()
  end

  # -- this node ---------------------------------------------------------------

  defp endpoint_findings do
    endpoints()
    |> Enum.reject(&loopback?(&1.ip))
    |> Enum.flat_map(fn s ->
      where = "#{:inet.ntoa(s.ip)}:#{s[:port]}"

      cond do
        s[:token] == nil ->
          [
            finding(
              :endpoint_exposed_without_token,
              :critical,
              "the HTTP endpoint on #{where} listens beyond loopback without an admin token",
              "Set http: [token: ...] (and read_token), or listen on 127.0.0.1 and reach it through a tunnel."
            )
          ]

        s[:read_token] == nil ->
          [
            finding(
              :endpoint_reads_open,
              :warning,
              "the HTTP endpoint on #{where} serves reads (topology, processes, health) to anyone who reaches it",
              "Set http: [read_token: ...] or restrict the listen address."
            )
          ]

        true ->
          []
      end
    end)
  end

  # The configured endpoint and the ones started at run time (demo, tests).
  defp endpoints do
    configured = Config.get(:http)

    running =
      try do
        for {_, pid, _, _} <-
              DynamicSupervisor.which_children(ClusterScope.Web.EndpointSupervisor),
            is_pid(pid),
            info = safe_info(pid),
            info != nil,
            settings = safe_settings(info.id),
            settings != nil,
            do: settings
      catch
        :exit, _ -> []
      end

    from_config = if configured[:enabled], do: [Map.new(configured)], else: []
    Enum.uniq_by(from_config ++ running, &{&1[:ip], &1[:port]})
  end

  defp safe_info(pid) do
    ClusterScope.Web.Endpoint.info(pid)
  rescue
    _ -> nil
  end

  defp safe_settings(id) do
    ClusterScope.Web.Endpoint.settings(id)
  rescue
    _ -> nil
  end

  defp loopback?({127, _, _, _}), do: true
  defp loopback?({0, 0, 0, 0, 0, 0, 0, 1}), do: true
  defp loopback?(_), do: false

  defp production_findings(:production) do
    rate = Config.get(:trace_max_rate) || 100_000

    [
      if(ClusterScope.Features.enabled?(:tracing) and rate > 10_000,
        do:
          finding(
            :tracing_unlimited,
            :warning,
            "tracing is on with up to #{rate} events/s per node",
            "Set trace_max_rate (5,000 is the production default) or features: [tracing: false]."
          )
      ),
      if(Config.get(:allow_dangerous_actions),
        do:
          finding(
            :dangerous_actions_allowed,
            :warning,
            "allow_dangerous_actions is on: kill and send with force reach the runtime's processes",
            "Turn allow_dangerous_actions off on production nodes."
          )
      ),
      if(Config.get(:allow_mode_switch),
        do:
          finding(
            :mode_switch_allowed,
            :warning,
            "allow_mode_switch is on: a client with the token can replace this node's view with a simulation or start peers",
            "Turn allow_mode_switch off on production nodes."
          )
      ),
      short_ticktime()
    ]
    |> Enum.reject(&is_nil/1)
  end

  defp production_findings(_), do: []

  defp short_ticktime do
    case :net_kernel.get_net_ticktime() do
      seconds when is_integer(seconds) and seconds < 10 ->
        finding(
          :short_net_ticktime,
          :warning,
          "net_ticktime is #{seconds} s: Erlang disconnects nodes that pause (GC, I/O) longer than that",
          "Keep the default of 60 s; ClusterScope's heartbeats detect silent nodes within a second without it."
        )

      _ ->
        nil
    end
  end

  defp heartbeats_off do
    ticktime =
      case :net_kernel.get_net_ticktime() do
        {:ongoing_change_to, t} -> t
        t -> t
      end

    if not ClusterScope.Features.enabled?(:heartbeats) and is_integer(ticktime) and ticktime >= 60 do
      [
        finding(
          :heartbeats_off_default_ticktime,
          :warning,
          "heartbeats are off and net_ticktime is #{ticktime} s: a frozen node or a partition shows only after 45-75 s",
          "Turn heartbeats on (features: [heartbeats: true]); lowering net_ticktime instead makes Erlang disconnect nodes that pause."
        )
      ]
    else
      []
    end
  end

  defp overlapping_partitions do
    case :application.get_env(:kernel, :prevent_overlapping_partitions) do
      {:ok, false} ->
        [
          finding(
            :overlapping_partitions_allowed,
            :warning,
            "prevent_overlapping_partitions is off: after a partition, nodes that do not see each other stay connected through others",
            "Remove -kernel prevent_overlapping_partitions false (true is OTP 25's default)."
          )
        ]

      _ ->
        []
    end
  end

  defp config_errors do
    case Config.errors() do
      [] ->
        []

      errors ->
        [
          finding(
            :config_errors,
            :warning,
            "invalid options replaced by their defaults: " <>
              Enum.map_join(errors, "; ", fn {k, m} -> "#{k} #{m}" end),
            "Fix the options named (see ClusterScope.Config)."
          )
        ]
    end
  end

  defp native do
    if ClusterScope.Native.loaded?(),
      do: [],
      else: [
        finding(
          :native_unavailable,
          :critical,
          "the native core is not loaded: #{inspect(ClusterScope.Native.status())}",
          "Rebuild with cargo (mix compile) or install the precompiled artifact of this machine."
        )
      ]
  end

  # -- the cluster -------------------------------------------------------------

  defp missing_agents(agents) do
    case Node.list() -- agents do
      [] ->
        []

      nodes ->
        [
          finding(
            :clusterscope_missing,
            :warning,
            "connected without a ClusterScope agent: #{Enum.map_join(nodes, ", ", &to_string/1)}",
            "Add :cluster_scope to those nodes' releases; until then they are read agentless (processes only)."
          )
        ]
    end
  end

  defp versions(agents) do
    own = ClusterScope.build_info()
    others = agents -- [node()]
    {answers, _errors} = ClusterScope.Fanout.multicall(others, ClusterScope, :build_info, [])

    different =
      for {n, info} <- answers,
          is_map(info),
          version(info) != version(own),
          do: "#{n} runs #{format_version(version(info))}"

    case different do
      [] ->
        []

      list ->
        [
          finding(
            :version_mismatch,
            :warning,
            "this node runs #{format_version(version(own))}; " <> Enum.join(list, ", "),
            "Finish the rolling deploy; meanwhile calls to those nodes use what both versions understand."
          )
        ]
    end
  end

  defp version(info) do
    # The protocol the node speaks (ClusterScope.Protocol), else its core's.
    protocol =
      case info do
        %{protocol_version: p} -> p
        %{native: %{protocol_version: p}} -> p
        _ -> nil
      end

    {info[:cluster_scope_version], protocol}
  end

  defp format_version({v, p}), do: "ClusterScope #{v} (protocol #{p || "unknown"})"

  defp horde do
    if Code.ensure_loaded?(Horde.Registry) do
      case ClusterScope.run("horde_cluster_members", %{}) do
        {:ok, data} -> horde_findings(data)
        {:error, _} -> []
      end
    else
      []
    end
  end

  defp horde_findings(data) do
    bad =
      for item <- List.wrap(Map.get(data, :hordes)),
          not_connected = List.wrap(item[:not_connected]),
          not_members = List.wrap(item[:connected_not_members]),
          not_connected != [] or not_members != [],
          do:
            "#{item[:name]}: members not connected #{inspect(not_connected)}, connected but not members #{inspect(not_members)}"

    case bad do
      [] ->
        []

      list ->
        [
          finding(
            :horde_members_mismatch,
            :warning,
            Enum.join(list, "; "),
            "Set members: :auto on the Horde processes, or update their member lists when nodes join and leave."
          )
        ]
    end
  end

  defp finding(id, severity, message, remediation),
    do: %{id: id, severity: severity, node: node(), message: message, remediation: remediation}
end
