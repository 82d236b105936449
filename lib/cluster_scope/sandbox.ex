defmodule ClusterScope.Sandbox do
  @moduledoc """
  Distributed sandboxes: named, isolated groups of supervised processes
  spread over chosen nodes, restarted on survivors when a node is lost,
  moved on demand, and removed from every node - including a node that was
  unreachable when the sandbox was destroyed, when it comes back.

  Built on OTP only (`:pg` scope `:cluster_scope_sandboxes` and, on each
  node, a part process linked to no supervisor, so no crash of ClusterScope's
  own processes ends a sandbox), so it works with or without Horde. Each node's part is a `ClusterScope.Sandbox.Group` that holds the
  sandbox's definition, the placement of every process (slot -> node) and
  its epoch: the state lives on the nodes and survives a restart of any
  node's `ClusterScope.Sandbox.Manager`. Placement is computed in the Rust
  core (`ClusterScope.Sandbox.Placement`).

  Safety: children come only from modules the host lists in
  `:startable_modules` (default none); a sandbox holds at most
  `:sandbox_max_processes` processes and a node runs parts of at most
  `:sandbox_max_per_node` sandboxes. A create is all or nothing: when a
  node refuses or fails its part, the parts already started are removed
  before the error is answered. Two creates of one name racing on two nodes
  are not excluded (the name check reads `:pg`, which converges within
  milliseconds).

  Cost: a create, migrate or destroy makes one call per node involved
  (through `ClusterScope.Fanout`, in parallel) and one start or stop per
  process; `list/0` one call per node running ClusterScope; `info/1` one per
  node of the sandbox, O(its processes).
  """

  alias ClusterScope.Fanout
  alias ClusterScope.Sandbox.{Agent, Group, Manager, Placement, Spec}

  @doc """
  Creates a sandbox. `params`: `name` (1..64 of `[A-Za-z0-9_.-]`, unique),
  `children` (see `ClusterScope.Sandbox.Spec`), `strategy` (`round_robin`,
  `spread` - default -, `pinned`, `least_loaded`), `nodes` (the nodes to
  use; default every node running ClusterScope; required by `pinned`),
  `restart` (`survivors` - default: a lost node's processes restart on the
  sandbox's other nodes - or `none`).
  """
  @spec create(map()) :: {:ok, map()} | {:error, term()}
  def create(params) do
    simulated? = ClusterScope.Mode.current() == :simulated

    with {:ok, d} <- Spec.definition(params),
         :ok <- unique(d.name),
         {:ok, nodes} <- target_nodes(d.nodes, simulated?),
         {:ok, placement, reason, node_errors} <- initial_placement(d, nodes, simulated?) do
      if simulated? or params[:dry_run] == true,
        do: {:ok, plan(d, placement, reason, node_errors, simulated?)},
        else: start(d, placement, reason, node_errors)
    else
      {:error, [%{} | _] = fields} ->
        {:error,
         {:invalid_params, Enum.map_join(fields, "; ", &"#{&1.field}: #{&1.message}"),
          %{fields: fields}}}

      other ->
        other
    end
  end

  # What create would do, started nowhere: a dry run, or any create in
  # simulated mode (virtual nodes run no processes; the placement is the
  # same core computation).
  defp plan(d, placement, reason, node_errors, simulated?) do
    %{
      planned: true,
      simulated: simulated?,
      name: d.name,
      strategy: d.strategy,
      restart: d.restart,
      processes: d.total,
      nodes: counts(List.to_tuple(placement)),
      placement_reason: reason,
      node_errors: node_errors
    }
  end

  defp start(d, placement, reason, node_errors) do
    definition =
      d
      |> Map.delete(:nodes)
      |> Map.merge(%{id: new_id(d.name), created_at_ms: System.system_time(:millisecond)})

    placement = List.to_tuple(placement)
    involved = placement |> Tuple.to_list() |> Enum.uniq()

    case apply_on(involved, definition, placement, Group.first_epoch()) do
      {_oks, []} ->
        Manager.record(:sandbox_created, nil, "sandbox #{d.name} created", %{
          id: definition.id,
          name: d.name,
          processes: d.total
        })

        Manager.record(:sandbox_placed, nil, reason, %{
          id: definition.id,
          nodes: counts(placement)
        })

        {:ok,
         %{
           id: definition.id,
           name: d.name,
           strategy: d.strategy,
           restart: d.restart,
           processes: d.total,
           nodes: counts(placement),
           placement_reason: reason,
           node_errors: node_errors
         }}

      {_oks, errors} ->
        rollback(involved, definition)

        {:error,
         {:unavailable,
          "sandbox #{d.name} not created (nothing of it is left): " <>
            Enum.map_join(errors, "; ", fn {n, text} -> "#{n}: #{text}" end),
          %{
            fields:
              Enum.map(errors, fn {n, text} -> %{field: "nodes", message: "#{n}: #{text}"} end)
          }}}
    end
  end

  # Every node involved, the failed ones too (a node that timed out may
  # have started its part after all): stopped, with a tombstone on each
  # node reached, so a part on a node not reached now goes when it
  # reconnects. The id is new, so the tombstone hides nothing else.
  defp rollback(nodes, definition) do
    Fanout.multicall(nodes, Agent, :destroy, [definition.id, definition.name])
  end

  defp unique(name) do
    if Enum.any?(sandbox_ids(), fn {_id, n} -> n == name end),
      do: invalid("name", "a sandbox named #{name} exists"),
      else: :ok
  end

  # Nodes given as names (text or atoms) are matched against the nodes that
  # can take a part, so no atom is made from input.
  defp target_nodes(nodes, true = _simulated?) do
    up = for {n, :up} <- ClusterScope.Simulator.nodes(), do: n

    case match_nodes(nodes || up, up) do
      {found, []} -> {:ok, Enum.sort(Enum.uniq(found))}
      {_, missing} -> invalid("nodes", "#{Enum.join(missing, ", ")}: not an up simulated node")
    end
  catch
    :exit, _ -> invalid("nodes", "the simulator is not running")
  end

  defp target_nodes(nil, false), do: {:ok, Enum.sort(Enum.uniq([node() | agents()]))}

  defp target_nodes(nodes, false) do
    agents = [node() | agents()]

    case match_nodes(nodes, agents) do
      {found, []} ->
        {:ok, Enum.uniq(found)}

      {_, missing} ->
        invalid(
          "nodes",
          "#{Enum.join(missing, ", ")}: not connected or not running ClusterScope"
        )
    end
  end

  defp match_nodes(given, known) do
    texts = Map.new(known, &{Atom.to_string(&1), &1})

    Enum.reduce(Enum.reverse(given), {[], []}, fn n, {found, missing} ->
      case Map.fetch(texts, to_string(n)) do
        {:ok, node} -> {[node | found], missing}
        :error -> {found, [to_string(n) | missing]}
      end
    end)
  end

  defp initial_placement(d, nodes, simulated?) do
    # Virtual nodes report no load: least loaded places them as spread would.
    {loads, errors} =
      if d.strategy == :least_loaded and not simulated?,
        do: Placement.loads(nodes),
        else: {%{}, []}

    figures = Enum.map(nodes, &{&1, Map.get(loads, &1, 0.0), 0})

    case Placement.place(d.strategy, d.total, figures, :erlang.phash2(d.name, length(nodes))) do
      {:ok, placement} ->
        {:ok, placement, reason(d.strategy, nodes, loads), errors}

      {:error, {_code, detail}} ->
        {:error, {:invalid_params, detail, %{fields: [%{field: "strategy", message: detail}]}}}

      {:error, :native_unavailable} ->
        {:error, :native_unavailable}
    end
  end

  defp reason(:round_robin, nodes, _), do: "round robin over #{Enum.join(nodes, ", ")}"
  defp reason(:spread, nodes, _), do: "spread evenly over #{Enum.join(nodes, ", ")}"
  defp reason(:pinned, nodes, _), do: "pinned to #{Enum.join(nodes, ", ")} in that order"

  defp reason(:least_loaded, _nodes, loads),
    do:
      "least loaded first; load figures: " <>
        Enum.map_join(loads, ", ", fn {n, l} -> "#{n} #{Float.round(l, 3)}" end)

  @doc "Every sandbox the nodes running ClusterScope know, with its processes per node."
  @spec list() :: {:ok, map()}
  def list do
    {answers, node_errors} = Fanout.multicall(Enum.uniq([node() | agents()]), Agent, :list, [])

    sandboxes =
      answers
      |> Enum.flat_map(fn {_n, {:ok, parts}} -> parts end)
      |> Enum.group_by(& &1.id)
      |> Enum.map(fn {_id, parts} -> merge(parts) end)
      |> Enum.sort_by(& &1.name)

    {:ok, %{sandboxes: sandboxes, node_errors: node_errors}}
  end

  defp merge(parts) do
    newest = Enum.max_by(parts, & &1.epoch_key)

    %{
      id: newest.id,
      name: newest.name,
      strategy: newest.strategy,
      restart: newest.restart,
      processes: newest.total,
      epoch: newest.epoch,
      created_at_ms: newest.created_at_ms,
      running: Enum.reduce(parts, 0, &(&1.running + &2)),
      failed: Enum.reduce(parts, 0, &(&1.failed + &2)),
      nodes:
        Map.new(parts, fn p ->
          {p.node, %{placed: p.placed_here, running: p.running, failed: p.failed, epoch: p.epoch}}
        end)
    }
  end

  @doc """
  One sandbox (by id or name): its definition and, per node, its processes
  with their status.
  """
  @spec info(binary()) :: {:ok, map()} | {:error, term()}
  def info(id_or_name) do
    with {:ok, id} <- resolve(id_or_name) do
      nodes = member_nodes(id)
      {answers, node_errors} = Fanout.multicall(nodes, Agent, :info, [id])
      parts = for {_n, {:ok, part}} <- answers, part != nil, do: part

      case parts do
        [] ->
          not_found(id_or_name)

        _ ->
          m = merge(parts)

          {:ok,
           Map.merge(m, %{
             nodes:
               Map.new(parts, fn p ->
                 {p.node,
                  %{
                    placed: p.placed_here,
                    running: p.running,
                    epoch: p.epoch,
                    processes: p.processes
                  }}
               end),
             node_errors: node_errors
           })}
      end
    end
  end

  @doc """
  Moves the processes of sandbox `id_or_name` off node `from` (a node of
  its placement, connected or gone: how the processes of a lost node of a
  `restart: :none` sandbox are started again) onto `to` (a list of nodes;
  default the sandbox's other connected nodes), placed by `strategy`
  (`spread` by default, or `least_loaded`) counting what each already runs.
  A target that fails its part is rolled back: the previous placement is
  applied again.
  """
  @spec migrate(binary(), node() | binary(), [node()] | nil, atom()) ::
          {:ok, map()} | {:error, term()}
  def migrate(id_or_name, from_in, to \\ nil, strategy \\ :spread) do
    reachable = [node() | Node.list()]

    with {:ok, id} <- resolve(id_or_name),
         {:ok, meta} <- fetch_meta(id),
         old = meta.placement,
         old_nodes = old |> Tuple.to_list() |> Enum.uniq(),
         {:ok, from} <- placed_node(from_in, old_nodes),
         targets = Enum.uniq(to || Enum.filter(old_nodes, &(&1 in reachable))) -- [from],
         :ok <- if(targets == [], do: invalid("to", "no node to move to"), else: :ok),
         {:ok, _} <- target_nodes(targets, false),
         moving = for(i <- 0..(tuple_size(old) - 1)//1, elem(old, i) == from, do: i),
         :ok <-
           if(moving == [],
             do: invalid("from", "#{from} runs no process of the sandbox"),
             else: :ok
           ),
         {loads, _} =
           if(strategy == :least_loaded, do: Placement.loads(targets), else: {%{}, []}),
         current = Enum.frequencies(Tuple.to_list(old)),
         figures = Enum.map(targets, &{&1, Map.get(loads, &1, 0.0), Map.get(current, &1, 0)}),
         {:ok, dest} <- Placement.place(strategy, length(moving), figures) do
      new =
        moving
        |> Enum.zip(dest)
        |> Enum.reduce(old, fn {slot, n}, acc -> put_elem(acc, slot, n) end)

      epoch = Group.next_epoch(meta.epoch)
      # A node gone is not asked: if it comes back, its part takes the newer
      # placement from the others (Manager.sync_with/2).
      involved = Enum.uniq(Enum.filter(old_nodes, &(&1 in reachable)) ++ targets)

      case apply_on(involved, meta.definition, new, epoch) do
        {_, []} ->
          Manager.record(
            :sandbox_migrated,
            from,
            "sandbox #{meta.definition.name} moved off #{from}",
            %{
              id: id,
              moved: length(moving),
              nodes: counts(new)
            }
          )

          {:ok,
           %{
             id: id,
             moved: length(moving),
             from: from,
             epoch: Group.counter(epoch),
             nodes: counts(new)
           }}

        {_, errors} ->
          {_, back} = apply_on(involved, meta.definition, old, Group.next_epoch(epoch))

          restored =
            if back == [],
              do: "the previous placement is back",
              else:
                "restoring the previous placement failed too: " <>
                  Enum.map_join(back, "; ", fn {n, t} -> "#{n}: #{t}" end)

          {:error,
           {:unavailable,
            "migration rolled back (#{restored}): " <>
              Enum.map_join(errors, "; ", fn {n, t} -> "#{n}: #{t}" end)}}
      end
    end
  end

  @doc """
  Destroys a sandbox on every node running ClusterScope and records a
  tombstone on each; a node that could not be reached is listed in
  `pending_nodes` and removes its part when it reconnects (it asks the
  others for their tombstones at nodeup).
  """
  @spec destroy(binary()) :: {:ok, map()} | {:error, term()}
  def destroy(id_or_name) do
    with {:ok, id} <- resolve(id_or_name) do
      name = name_of(id) || id_or_name
      targets = Enum.uniq([node() | agents()] ++ member_nodes(id))
      {answers, node_errors} = Fanout.multicall(targets, Agent, :destroy, [id, name])
      stopped = Enum.reduce(answers, 0, fn {_n, {:ok, k}}, acc -> acc + k end)
      pending = Enum.map(node_errors, & &1.node)

      Manager.record(:sandbox_destroyed, nil, "sandbox #{name} destroyed", %{
        id: id,
        pending: pending
      })

      {:ok,
       %{
         id: id,
         name: name,
         stopped: stopped,
         nodes: Enum.map(answers, &elem(&1, 0)),
         pending_nodes: pending,
         node_errors: node_errors
       }}
    end
  end

  @doc """
  For a process of a sandbox (a child its part started): the sandbox's id,
  name, epoch and processes per node, read from its part's process
  dictionary (no call, so safe from a child's `init/1`). `nil` elsewhere.
  """
  @spec topology() :: map() | nil
  def topology do
    case sandbox_of(self()) do
      nil ->
        nil

      s ->
        Map.put(s, :connected, Enum.sort([node() | Node.list()]))
    end
  end

  @doc """
  The sandbox summary of `pid` when its parent (the runtime's, not
  `$ancestors`) is a sandbox part on this node, else `nil`: how process
  views tell a sandbox's processes.
  """
  @spec sandbox_of(pid()) :: map() | nil
  def sandbox_of(pid) when is_pid(pid) and node(pid) == node() do
    with {:parent, parent} when is_pid(parent) <- Process.info(pid, :parent),
         {:dictionary, dict} <- Process.info(parent, :dictionary),
         {_, %{id: _} = s} <- List.keyfind(dict, :cluster_scope_sandbox, 0) do
      s
    else
      _ -> nil
    end
  end

  def sandbox_of(_), do: nil

  # -- helpers shared with the manager ------------------------------------------------------

  @doc false
  # Applies `placement` at `epoch` on `nodes` in parallel; `{oks, errors}`.
  def apply_on(nodes, definition, placement, epoch) do
    nodes
    |> Task.async_stream(
      fn n -> {n, Fanout.call(n, Agent, :apply, [definition, placement, epoch], 60_000)} end,
      timeout: 65_000,
      ordered: false,
      max_concurrency: 64
    )
    |> Enum.reduce({[], []}, fn
      {:ok, {n, {:ok, {:ok, r}}}}, {oks, errs} -> {[{n, r} | oks], errs}
      {:ok, {n, {:ok, {:error, text}}}}, {oks, errs} -> {oks, [{n, text} | errs]}
      {:ok, {n, {:error, e}}}, {oks, errs} -> {oks, [{n, inspect(e.reason)} | errs]}
      {:exit, reason}, {oks, errs} -> {oks, [{:unknown, inspect(reason)} | errs]}
    end)
  end

  @doc false
  def counts(placement), do: placement |> Tuple.to_list() |> Enum.frequencies()

  # `from` as one of the nodes of the placement, compared by name (a node
  # gone is no longer a known node of the cluster; no atom is made).
  defp placed_node(from, nodes) do
    text = to_string(from)

    case Enum.find(nodes, &(Atom.to_string(&1) == text)) do
      nil -> invalid("from", "#{text} runs no process of the sandbox")
      n -> {:ok, n}
    end
  end

  defp fetch_meta(id) do
    nodes = member_nodes(id)
    {answers, _} = Fanout.multicall(nodes, Agent, :meta, [id])

    case for({_n, m} <- answers, is_map(m), do: m) do
      [] -> not_found(id)
      metas -> {:ok, Enum.max_by(metas, & &1.epoch)}
    end
  end

  @doc """
  The id of the sandbox named or identified by `id_or_name`, from `:pg`'s
  local tables (no call to another node).
  """
  @spec id_of(binary()) :: {:ok, binary()} | {:error, term()}
  def id_of(id_or_name) when is_binary(id_or_name), do: resolve(id_or_name)

  defp resolve(id_or_name) when is_binary(id_or_name) do
    case Enum.find(sandbox_ids(), fn {id, name} -> id == id_or_name or name == id_or_name end) do
      {id, _} -> {:ok, id}
      nil -> not_found(id_or_name)
    end
  end

  defp name_of(id) do
    case List.keyfind(sandbox_ids(), id, 0) do
      {_, name} -> name
      nil -> nil
    end
  end

  # {id, name} of every sandbox `:pg` knows (the name is the id's prefix).
  defp sandbox_ids do
    for {:sandbox, id} <- :pg.which_groups(Group.scope()), do: {id, id_name(id)}
  catch
    _, _ -> []
  end

  defp id_name(id), do: id |> String.split("~") |> hd()

  defp member_nodes(id) do
    Group.scope() |> :pg.get_members({:sandbox, id}) |> Enum.map(&node/1) |> Enum.uniq()
  catch
    _, _ -> []
  end

  # An id carries the name, so listing needs no call: name~<random>.
  defp new_id(name),
    do: name <> "~" <> Base.encode16(:crypto.strong_rand_bytes(6), case: :lower)

  defp agents, do: ClusterScope.Cluster.Heartbeat.agent_nodes()

  defp not_found(what),
    do:
      {:error,
       {:not_found, "no sandbox #{inspect(what)}",
        %{fields: [%{field: "id", message: "no sandbox #{inspect(what)}"}]}}}

  defp invalid(field, message),
    do:
      {:error,
       {:invalid_params, "#{field}: #{message}", %{fields: [%{field: field, message: message}]}}}
end
