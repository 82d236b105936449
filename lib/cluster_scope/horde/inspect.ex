defmodule ClusterScope.Horde.Inspect do
  @moduledoc """
  What ClusterScope reads of Horde, on this node (`local_*`, also called on
  other nodes through `ClusterScope.Fanout`) and for the cluster
  (`cluster_*`).

  ## What is read, and why it is safe

  Every read goes through `ClusterScope.Horde.Call` (a process of its own,
  a deadline, default #{ClusterScope.Horde.Call.default_deadline()} ms) and
  touches only this node's Horde processes:

    * a registry's entries: `Horde.Registry.select/2` (Horde's public API:
      a read of the local replica's ETS table, which holds every entry of
      the cluster; no process is called); its members:
      `Horde.Cluster.members/1`;
    * a supervisor's members, their status and its records of children:
      `:sys.get_state/2` of the supervisor's process with the deadline.
      **This is Horde's internal state** (`Horde.DynamicSupervisorImpl` in
      Horde 0.10: `members`, `members_info` with each member's `status`,
      `processes_by_id`, an ETS table of `{member, child_spec, pid}` read
      here directly): Horde has no public API for member status, and its
      public `which_children/1` / `count_children/1` are the calls that
      freeze the supervisor when a member is frozen (see
      `ClusterScope.Horde.Call`). A shape that is not Horde 0.10's is
      reported as an error, never guessed at;
    * the children running on this node: `:sys.get_state/2` of the local
      `<name>.ProcessesSupervisor` (internal state too: its `children`).

  Other nodes are asked for their own local views through
  `ClusterScope.Fanout`, only when this node's cluster state sees them as
  up (`ClusterScope.Horde.Call.callable_nodes/1`); a node without
  ClusterScope is covered by the replicas of the others.

  ## Cost

  A local view of a supervisor copies its state (a few hundred bytes plus
  its member maps), reads its records (one ETS pass: proportional to the
  children of the whole cluster) and the local supervisor's children map
  (proportional to the children on this node). A registry's view is one
  pass over its replica (proportional to its entries). Measured with a few
  thousand children: milliseconds.
  """

  alias ClusterScope.Horde.{Call, Discovery, Findings}

  @typedoc "A member of a Horde registry or supervisor."
  @type member :: %{name: atom(), node: node(), status: atom()}

  # -- local views ---------------------------------------------------------------------

  @doc """
  This node's view of the supervisor `name`: its members with their status
  (`:alive`, `:uninitialized` for a member where no such supervisor runs,
  `:shutting_down`, `:dead`), its distribution strategy, its records of
  every child of the cluster (`records`: `%{id, member_node, pid, spec}`,
  `spec` a `{label, hash}` of the child's start MFA), and the children
  actually running here (`running`: `%{pid, spec, registered: [registry]}`).

  Returns `{:ok, view}` or `{:error, text}`.
  """
  @spec local_supervisor(atom(), keyword()) :: {:ok, map()} | {:error, String.t()}
  def local_supervisor(name, opts \\ []) when is_atom(name) do
    deadline = Keyword.get(opts, :deadline_ms, Call.default_deadline())

    with {:ok, state} <- fetch_state(name, deadline),
         {:ok, impl} <- impl_fields(state),
         {:ok, records} <- read_records(impl.processes_by_id, deadline) do
      running = local_running(name, deadline)

      {:ok,
       %{
         name: name,
         node: node(),
         strategy: impl.strategy,
         process_redistribution: impl.process_redistribution,
         members_option: impl.members_option,
         members: impl.members,
         records: records,
         running: running
       }}
    end
  end

  defp fetch_state(name, deadline) do
    case Call.state(name, deadline) do
      {:ok, state} -> {:ok, state}
      {:error, reason} -> {:error, "#{inspect(name)}: state #{Call.describe(reason)}"}
    end
  end

  # Horde 0.10's DynamicSupervisorImpl state.
  defp impl_fields(%{members: members, members_info: info, processes_by_id: table} = state)
       when is_map(members) and is_map(info) do
    options = Map.get(state, :supervisor_options, [])
    options = if is_list(options), do: options, else: []

    member_list =
      for {{m_name, m_node} = key, _} <- members, is_atom(m_name) and is_atom(m_node) do
        status =
          case Map.get(info, key) do
            %{status: status} when is_atom(status) -> status
            _ -> :unknown
          end

        %{name: m_name, node: m_node, status: status}
      end
      |> Enum.sort_by(& &1.node)

    {:ok,
     %{
       members: member_list,
       processes_by_id: table,
       strategy: Map.get(state, :distribution_strategy),
       process_redistribution: Keyword.get(options, :process_redistribution, :passive),
       members_option: if(Keyword.get(options, :members) == :auto, do: :auto, else: :explicit)
     }}
  end

  defp impl_fields(_state),
    do: {:error, "the supervisor's state is not Horde 0.10's (no members/members_info)"}

  defp read_records(table, deadline) do
    result =
      Call.run(
        fn ->
          :ets.foldl(
            fn
              {id, {{_m_name, m_node}, spec, pid}}, acc when is_map(spec) and is_pid(pid) ->
                [%{id: id, member_node: m_node, pid: pid, spec: spec_key(spec)} | acc]

              _, acc ->
                acc
            end,
            [],
            table
          )
        end,
        deadline
      )

    case result do
      {:ok, records} -> {:ok, records}
      {:error, reason} -> {:error, "records: " <> Call.describe(reason)}
    end
  end

  defp local_running(name, deadline) do
    with {:ok, sup} <- existing(Atom.to_string(name) <> ".ProcessesSupervisor"),
         {:ok, %{children: children}} when is_map(children) <- Call.state(sup, deadline) do
      registries = Discovery.local().registries

      pid_tables =
        for r <- registries, {:ok, t} <- [existing("pids_" <> Atom.to_string(r))], do: {r, t}

      for {pid, child} <- children, is_pid(pid) do
        %{
          pid: pid,
          spec: child_spec_key(child),
          registered: for({r, t} <- pid_tables, safe_member?(t, pid), do: r)
        }
      end
    else
      {:error, reason} when is_tuple(reason) -> {:error, Call.describe(reason)}
      {:error, text} when is_binary(text) -> {:error, text}
      _ -> {:error, "the local supervisor's state is not Horde 0.10's"}
    end
  end

  defp safe_member?(table, pid) do
    :ets.member(table, pid)
  rescue
    ArgumentError -> false
  end

  defp child_spec_key({:restarting, child}), do: child_spec_key(child)
  defp child_spec_key({_id, {m, f, a}, _, _, _, _}), do: mfa_key(m, f, a)
  defp child_spec_key(_), do: {"unknown", 0}

  @doc false
  def spec_key(%{start: {m, f, a}}), do: mfa_key(m, f, a)
  def spec_key(_), do: {"unknown", 0}

  defp mfa_key(m, f, a) when is_atom(m) and is_atom(f) and is_list(a),
    do: {"#{inspect(m)}.#{f}/#{length(a)}", :erlang.phash2({m, f, a})}

  defp mfa_key(m, f, a), do: {"#{inspect(m)}.#{inspect(f)}", :erlang.phash2({m, f, a})}

  defp existing(text) do
    {:ok, String.to_existing_atom(text)}
  rescue
    ArgumentError -> {:error, "#{text} does not exist"}
  end

  @doc """
  This node's view of the registry `name`: its members (`Horde.Cluster.members/1`),
  the number of entries in its replica, entries per node (the node of each
  pid) and a digest of its `{key, pid}` pairs (equal digests: equal
  replicas). With `entries: true` also the entries themselves.
  """
  @spec local_registry(atom(), keyword()) :: {:ok, map()} | {:error, String.t()}
  def local_registry(name, opts \\ []) when is_atom(name) do
    deadline = Keyword.get(opts, :deadline_ms, Call.default_deadline())

    with {:ok, entries} <- registry_entries(name, deadline),
         {:ok, members} <- registry_members(name, deadline) do
      view = %{
        name: name,
        node: node(),
        members: members,
        count: length(entries),
        per_node: Enum.frequencies_by(entries, fn {_k, pid, _v} -> node(pid) end),
        digest:
          entries |> Enum.map(fn {k, pid, _} -> {k, pid} end) |> Enum.sort() |> :erlang.phash2()
      }

      {:ok,
       if(Keyword.get(opts, :entries, false), do: Map.put(view, :entries, entries), else: view)}
    end
  end

  defp registry_entries(name, deadline) do
    spec = [{{:"$1", :"$2", :"$3"}, [], [{{:"$1", :"$2", :"$3"}}]}]

    case Call.run(fn -> apply(Horde.Registry, :select, [name, spec]) end, deadline) do
      {:ok, entries} when is_list(entries) -> {:ok, entries}
      {:ok, other} -> {:error, "select answered #{inspect(other, limit: 3)}"}
      {:error, reason} -> {:error, "#{inspect(name)}: select #{Call.describe(reason)}"}
    end
  end

  defp registry_members(name, deadline) do
    case Call.members(name, deadline) do
      {:ok, members} when is_list(members) ->
        {:ok,
         for({n, nd} <- members, is_atom(n) and is_atom(nd), do: %{name: n, node: nd})
         |> Enum.sort_by(& &1.node)}

      {:ok, other} ->
        {:error, "members answered #{inspect(other, limit: 3)}"}

      {:error, reason} ->
        {:error, "#{inspect(name)}: members #{Call.describe(reason)}"}
    end
  end

  @doc """
  The `[{pid, value}]` registered under `key` in the registry `name`, from
  this node's replica (`Horde.Registry.select/2`) within the deadline.
  Unlike `Horde.Registry.lookup/2` it never asks the pid's node whether the
  pid is alive (an `:erpc` call with no timeout: it waits as long as that
  node is frozen); the pid may have exited meanwhile.
  Returns `{:error, text}` when the registry does not answer.
  """
  @spec lookup(atom(), term(), pos_integer()) :: [{pid(), term()}] | {:error, String.t()}
  def lookup(name, key, deadline \\ Call.default_deadline()) do
    spec = [{{:"$1", :"$2", :"$3"}, [{:"=:=", :"$1", {:const, key}}], [{{:"$2", :"$3"}}]}]

    case Call.run(fn -> apply(Horde.Registry, :select, [name, spec]) end, deadline) do
      {:ok, list} when is_list(list) -> list
      {:ok, other} -> {:error, "select answered #{inspect(other, limit: 3)}"}
      {:error, reason} -> {:error, "Horde registry #{inspect(name)}: #{Call.describe(reason)}"}
    end
  end

  @doc """
  What this node knows of every Horde registry and supervisor running on it,
  summarised for health and for comparing nodes: per supervisor its
  members and statuses, records per node and the findings that can be
  told from here (`ClusterScope.Horde.Findings.supervisor/2`); per
  registry its members, count and digest. Never raises.
  """
  @spec local_summary(keyword()) :: map()
  def local_summary(opts \\ []) do
    found = Discovery.local()
    connected = [node() | Node.list(:connected)]
    up = up_nodes(connected)

    supervisors =
      for name <- found.supervisors do
        case local_supervisor(name, opts) do
          {:ok, view} -> Findings.supervisor(view, up)
          {:error, text} -> %{name: name, error: text}
        end
      end

    registries =
      for name <- found.registries do
        case local_registry(name, opts) do
          {:ok, view} -> Findings.registry(view, up)
          {:error, text} -> %{name: name, error: text}
        end
      end

    %{node: node(), supervisors: supervisors, registries: registries}
  catch
    kind, reason ->
      %{
        node: node(),
        supervisors: [],
        registries: [],
        error: "#{kind}: #{inspect(reason, limit: 5)}"
      }
  end

  # The nodes this node sees as up: connected, and up in the cluster state
  # (a frozen or suspected node is connected but not up).
  defp up_nodes(connected) do
    {up, _skipped} = Call.callable_nodes(connected)
    up
  end

  # -- for the operations ----------------------------------------------------------------

  @doc """
  This node and the connected nodes its cluster state sees as up (a frozen
  or suspected node is connected but not up). No call to any node.
  """
  @spec up_nodes() :: [node()]
  def up_nodes, do: up_nodes([node() | Node.list(:connected)])

  @doc """
  The registry (`:registry`) or supervisor (`:supervisor`) named `text` on
  this node (`ClusterScope.Horde.Discovery.resolve/2`: no atom is made), as
  an operation answers it: `{:ok, name}` or `{:error, {:not_found, text}}`.
  """
  @spec resolve_name(:registry | :supervisor, String.t() | atom()) ::
          {:ok, atom()} | {:error, {:not_found, String.t()}}
  def resolve_name(kind, text) do
    case Discovery.resolve(kind, text) do
      {:ok, name} -> {:ok, name}
      {:error, message} -> {:error, {:not_found, message}}
    end
  end

  @doc """
  `local_registry/2` or `local_supervisor/2` of `name`, as an operation
  answers it: `{:ok, view}` or `{:error, {:unavailable, text}}` naming it.
  """
  @spec view(:registry | :supervisor, atom(), keyword()) ::
          {:ok, map()} | {:error, {:unavailable, String.t()}}
  def view(kind, name, opts \\ []) do
    result =
      case kind do
        :registry -> local_registry(name, opts)
        :supervisor -> local_supervisor(name, opts)
      end

    case result do
      {:ok, view} -> {:ok, view}
      {:error, text} -> {:error, {:unavailable, "Horde #{kind} #{inspect(name)}: #{text}"}}
    end
  end

  @doc """
  The findings of the supervisor `name` as seen from this node
  (`ClusterScope.Horde.Findings.supervisor/2` of `local_supervisor/2`),
  or `{:ok, nil}` when no such supervisor runs here; called on every node
  by the operations, through `ClusterScope.Fanout`.
  """
  @spec local_supervisor_summary(atom(), keyword()) :: {:ok, map()} | {:error, String.t()}
  def local_supervisor_summary(name, opts \\ []) do
    if Process.whereis(name) == nil do
      {:ok, nil}
    else
      with {:ok, view} <- local_supervisor(name, opts) do
        {:ok, Findings.supervisor(view, up_nodes())}
      end
    end
  end

  # -- cluster views -------------------------------------------------------------------

  @doc """
  Calls `fun(args)` of this module on every node of `nodes` (default: this
  node and the connected ones) that this node's cluster state sees as up
  and that runs ClusterScope, through `ClusterScope.Fanout` with `timeout`.
  Returns `{[{node, value}], node_errors}`. A node of `nodes` that is not
  up or not connected is in the errors with its status, never called; a
  connected node without ClusterScope is in the errors only when it was
  listed explicitly (`nodes` given).
  """
  @spec fan(atom(), list(), [node()] | nil, pos_integer()) :: {[{node(), term()}], [map()]}
  def fan(fun, args, nodes \\ nil, timeout \\ ClusterScope.Fanout.default_timeout()) do
    connected = MapSet.new([node() | Node.list(:connected)])
    explicit? = nodes != nil
    nodes = Enum.uniq(nodes || MapSet.to_list(connected))
    agents = MapSet.new([node() | ClusterScope.Cluster.Heartbeat.agent_nodes()])
    {callable, skipped} = Call.callable_nodes(nodes)

    {call, absent} = Enum.split_with(callable, &MapSet.member?(connected, &1))
    {call, agentless} = Enum.split_with(call, &MapSet.member?(agents, &1))
    {answers, errors} = ClusterScope.Fanout.multicall(call, __MODULE__, fun, args, timeout)

    agentless_errors =
      if explicit?,
        do:
          for(
            n <- agentless,
            do: %{
              node: n,
              status: :not_running,
              reason: "#{n} does not run ClusterScope: seen only through the others' replicas",
              remediation: "Add :cluster_scope to #{n}'s release."
            }
          ),
        else: []

    {answers,
     errors ++
       for({n, s} <- skipped, do: ClusterScope.Fanout.not_called(n, s)) ++
       for(n <- absent, do: ClusterScope.Fanout.not_called(n, :not_connected)) ++
       agentless_errors}
  end

  # -- placed start --------------------------------------------------------------------

  @doc """
  Starts `child_spec` under the supervisor `name` **on this node**, as
  Horde does when it receives a start request forwarded from another
  member whose time-to-live has run out (`{:proxy_operation, msg, from,
  ttl}` with the last hop: Horde 0.10's internal protocol; it has no public
  call to start a child on a chosen node). The supervisor records the
  child in its CRDT like any other; with `process_redistribution: :active`
  Horde may later move it to the node its strategy prefers.

  Runs in a process of its own; answers within `deadline_ms`.
  """
  @spec local_start(atom(), map(), pos_integer()) :: {:ok, pid()} | {:error, String.t()}
  def local_start(name, child_spec, deadline_ms) when is_atom(name) and is_map(child_spec) do
    with {:ok, name} <- Discovery.resolve(:supervisor, name) do
      result =
        Call.run(
          fn ->
            tag = make_ref()
            send(name, {:proxy_operation, {:start_child, child_spec}, {self(), tag}, 1})

            receive do
              {^tag, reply} -> reply
            after
              deadline_ms -> {:error, :no_reply}
            end
          end,
          deadline_ms + 100
        )

      start_result(result)
    end
  end

  @doc """
  Starts `child_spec` through Horde's own `start_child/2` (its
  distribution strategy chooses the node), within `deadline_ms`.
  """
  @spec horde_start(atom(), map(), pos_integer()) :: {:ok, pid()} | {:error, String.t()}
  def horde_start(name, child_spec, deadline_ms) do
    Call.run(
      fn -> apply(Horde.DynamicSupervisor, :start_child, [name, child_spec]) end,
      deadline_ms
    )
    |> start_result()
  end

  # A start's answer (through Call.run/2), Horde's own or the local one.
  defp start_result({:ok, {:ok, pid}}) when is_pid(pid), do: {:ok, pid}
  defp start_result({:ok, {:ok, pid, _info}}) when is_pid(pid), do: {:ok, pid}
  defp start_result({:ok, :ignore}), do: {:error, "the child's start function returned :ignore"}

  defp start_result({:ok, {:error, reason}}),
    do: {:error, "Horde refused: #{inspect(reason, limit: 5)}"}

  defp start_result({:ok, other}), do: {:error, "unexpected answer: #{inspect(other, limit: 5)}"}
  defp start_result({:error, reason}), do: {:error, Call.describe(reason)}
end
