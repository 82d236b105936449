defmodule ClusterScope.Operations.HordeProcessStart do
  @moduledoc """
  `POST /api/v1/horde/supervisors/:supervisor/children`: starts a child
  under a Horde supervisor with a placement preference, and reports where
  it started and why.

  The child is `%{start: {module, function, args}, restart:, shutdown:}`
  (`module` must be one the host lists in the `:startable_modules` option,
  since the start function runs with arguments from the request; it and
  `function` must exist and be exported with that arity on this node: no
  atom is made from input; `args` is a JSON list, atoms as
  `{"$atom": "name"}` of existing atoms, see `ClusterScope.Procs.Terms`).
  Placement, one of:

    * `node` - on that node;
    * `nodes` - on the least loaded of these nodes (children recorded per
      node);
    * `strategy`: `horde` (default without `node`/`nodes`: Horde's own
      distribution strategy chooses, through `start_child/2`), `local` (this
      node), `least_loaded` (the live member with the fewest children).

  A target must be a live member of the supervisor (status `alive`, up in
  ClusterScope's cluster state) that runs ClusterScope; anything else is a
  400 naming the field. Horde has no public call to start on a chosen
  node: the start is sent to the target's own supervisor as a forwarded
  request on its last hop (Horde 0.10's internal protocol), so the target
  starts it itself and records it like any child. With
  `process_redistribution: :active` Horde may later move it to the node its
  strategy prefers (the answer says so).

  Every Horde call runs in a process of its own with `timeout_ms`.
  Mutating (`:control` scope). Requires Horde: without it the operation is
  listed as unavailable and answers 503.
  """

  # The operation's deadline covers the longest start a request may allow
  # (timeout_ms up to 30 s) plus the reads around it: a shorter one would
  # answer a timeout while Horde goes on to start the child.
  # Majority: a child started by a minority is a duplicate at the heal.
  use ClusterScope.Operation,
    name: "horde_process_start",
    requires: [:horde],
    timeout: 35_000,
    partition: :majority,
    idempotent: false

  alias ClusterScope.Horde.{Findings, Inspect}

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/horde/supervisors/:supervisor/children",
      summary: "Start a child under a Horde supervisor on a chosen node, list or strategy",
      parameters: [
        %{
          name: :supervisor,
          type: :string,
          required: true,
          max_length: 255,
          location: :path,
          description: "the supervisor's name (MyApp.Supervisor or :my_sup)"
        },
        %{
          name: :module,
          type: :string,
          required: true,
          max_length: 255,
          location: :body,
          description: "the child's start module (an existing, loaded module)"
        },
        %{
          name: :function,
          type: :string,
          default: "start_link",
          max_length: 255,
          location: :body,
          description: "the start function, exported with length(args) arguments"
        },
        %{
          name: :args,
          type: :json,
          default: [],
          location: :body,
          description: "the start arguments, a JSON list (atoms as {\"$atom\": \"name\"})"
        },
        %{
          name: :restart,
          type: :enum,
          values: [:permanent, :transient, :temporary],
          default: :permanent,
          location: :body,
          description: "the child's restart type"
        },
        %{
          name: :shutdown,
          type: :integer,
          min: 0,
          max: 3_600_000,
          default: 5_000,
          location: :body,
          description: "ms the child gets to stop"
        },
        %{
          name: :node,
          type: :node,
          location: :body,
          description: "start on this node"
        },
        %{
          name: :nodes,
          type: :array,
          items: :node,
          min_length: 1,
          max_length: 100,
          location: :body,
          description: "start on the least loaded of these nodes"
        },
        %{
          name: :strategy,
          type: :enum,
          values: [:horde, :local, :least_loaded],
          location: :body,
          description: "horde (Horde's strategy chooses), local, least_loaded"
        },
        %{
          name: :timeout_ms,
          type: :integer,
          min: 100,
          max: 30_000,
          default: 5_000,
          location: :body,
          description: "deadline of the start"
        }
      ],
      responses: %{200 => %{description: "the child's pid, node, and why there"}}
    }
  end

  @doc false
  def check_params(params) do
    errors =
      [
        placement_error(params),
        module_error(params)
      ]
      |> Enum.reject(&is_nil/1)

    with [] <- errors,
         {:ok, args} <- args(params.args),
         {:ok, module} <- startable(params.module),
         {:ok, fun} <- exported(module, params.function, length(args)) do
      {:ok, Map.merge(params, %{args: args, module: module, function: fun})}
    else
      [_ | _] = errors -> {:error, errors}
      {:error, field, message} -> {:error, [%{field: field, message: message}]}
    end
  end

  defp placement_error(params) do
    cond do
      params[:node] && params[:nodes] ->
        %{field: "nodes", message: "cannot be combined with node"}

      params[:node] && params[:strategy] ->
        %{field: "strategy", message: "cannot be combined with node"}

      params[:nodes] && params[:strategy] in [:horde, :local] ->
        %{
          field: "strategy",
          message: "#{params.strategy} cannot be combined with nodes (least_loaded can)"
        }

      true ->
        nil
    end
  end

  defp module_error(%{module: m}) when byte_size(m) == 0,
    do: %{field: "module", message: "must not be empty"}

  defp module_error(_), do: nil

  defp args(list) when is_list(list) do
    case ClusterScope.Procs.Terms.from_json(list, "args") do
      {:ok, args} -> {:ok, args}
      {:error, message} -> {:error, "args", message}
    end
  end

  defp args(other),
    do: {:error, "args", "must be a JSON list, got: #{inspect(other, limit: 5)}"}

  defp startable(text) do
    with {:error, message} <- ClusterScope.Startable.resolve(text),
         do: {:error, "module", message}
  end

  defp exported(module, text, arity) do
    atom = String.to_existing_atom(text)

    if function_exported?(module, atom, arity),
      do: {:ok, atom},
      else: {:error, "function", "#{inspect(module)}.#{text}/#{arity} is not exported"}
  rescue
    ArgumentError -> {:error, "function", "#{inspect(module)}.#{text}/#{arity} is not exported"}
  end

  @impl true
  def execute(params) do
    with {:ok, name} <- Inspect.resolve_name(:supervisor, params.supervisor),
         {:ok, view} <- Inspect.view(:supervisor, name),
         summary = Findings.supervisor(view, Inspect.up_nodes()),
         {:ok, placement} <- place(params, summary) do
      spec = %{
        id: params.module,
        start: {params.module, params.function, params.args},
        restart: params.restart,
        shutdown: params.shutdown,
        type: :worker,
        modules: [params.module]
      }

      case start(name, spec, placement, params.timeout_ms) do
        {:ok, pid} ->
          {:ok,
           %{
             supervisor: name,
             pid: ClusterScope.ProcessRef.to_string(pid),
             node: node(pid),
             strategy: placement.strategy,
             requested: placement.requested,
             reason: placement.reason,
             distribution_strategy: summary.strategy,
             may_move: view.process_redistribution == :active and placement.strategy != :horde
           }}

        {:error, text} ->
          {:error, {:unavailable, "starting under #{inspect(name)} failed: #{text}"}}
      end
    end
  end

  # -- placement --------------------------------------------------------------------------

  defp place(%{node: node}, summary) when is_atom(node) and node != nil do
    with :ok <- target_ok(node, summary, "node") do
      {:ok, %{strategy: :node, requested: node, target: node, reason: "requested node"}}
    end
  end

  defp place(%{nodes: nodes}, summary) when is_list(nodes) do
    {ok, refused} = Enum.split_with(Enum.uniq(nodes), &(target_ok(&1, summary, "nodes") == :ok))

    case least_loaded(ok, summary) do
      nil ->
        {:error,
         {:invalid_params, "no usable node in nodes", %{fields: [field_error(refused, summary)]}}}

      {target, count} ->
        {:ok,
         %{
           strategy: :least_loaded,
           requested: nodes,
           target: target,
           reason:
             "least loaded of the usable requested nodes (#{count} children)" <>
               skipped_text(refused, summary)
         }}
    end
  end

  defp place(%{strategy: :local}, summary) do
    with :ok <- target_ok(node(), summary, "strategy") do
      {:ok, %{strategy: :local, requested: :local, target: node(), reason: "this node"}}
    end
  end

  defp place(%{strategy: :least_loaded}, summary) do
    usable = Enum.filter(summary.live_nodes, &(target_ok(&1, summary, "strategy") == :ok))

    case least_loaded(usable, summary) do
      nil ->
        {:error,
         {:invalid_params, "no live member runs ClusterScope",
          %{
            fields: [
              %{field: "strategy", message: "no live member of the supervisor runs ClusterScope"}
            ]
          }}}

      {target, count} ->
        {:ok,
         %{
           strategy: :least_loaded,
           requested: :least_loaded,
           target: target,
           reason: "the live member with the fewest children (#{count})"
         }}
    end
  end

  defp place(_params, _summary) do
    {:ok,
     %{
       strategy: :horde,
       requested: :horde,
       target: nil,
       reason: "chosen by the supervisor's distribution strategy"
     }}
  end

  defp least_loaded([], _summary), do: nil

  defp least_loaded(nodes, summary) do
    nodes
    |> Enum.map(&{&1, Map.get(summary.children_per_node, &1, 0)})
    |> Enum.min_by(fn {n, c} -> {c, n} end)
  end

  defp target_ok(node, summary, field) do
    member = Enum.find(summary.members, &(&1.node == node))
    agents = [node() | ClusterScope.Cluster.Heartbeat.agent_nodes()]

    cond do
      member == nil ->
        invalid(field, "#{node} is not a member of #{inspect(summary.name)}")

      node not in summary.live_nodes ->
        invalid(
          field,
          "#{node} is not a live member (status #{member.status}, " <>
            "#{if member.connected, do: "up", else: "not up"} here)"
        )

      node not in agents ->
        invalid(field, "#{node} does not run ClusterScope (a placed start runs there)")

      true ->
        :ok
    end
  end

  defp invalid(field, message),
    do:
      {:error,
       {:invalid_params, "#{field}: #{message}", %{fields: [%{field: field, message: message}]}}}

  defp field_error(refused, summary) do
    reasons =
      Enum.map_join(refused, "; ", fn n ->
        {:error, {_, message, _}} = target_ok(n, summary, "nodes")
        message
      end)

    %{field: "nodes", message: reasons}
  end

  defp skipped_text([], _), do: ""
  defp skipped_text(refused, summary), do: "; skipped: " <> field_error(refused, summary).message

  defp start(name, spec, %{target: nil}, timeout), do: Inspect.horde_start(name, spec, timeout)

  defp start(name, spec, %{target: target}, timeout) when target == node(),
    do: Inspect.local_start(name, spec, timeout)

  defp start(name, spec, %{target: target}, timeout) do
    case ClusterScope.Fanout.call(
           target,
           Inspect,
           :local_start,
           [name, spec, timeout],
           timeout + 500
         ) do
      {:ok, result} -> result
      {:error, error} -> {:error, error.reason}
    end
  end
end
