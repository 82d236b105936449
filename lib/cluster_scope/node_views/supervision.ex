defmodule ClusterScope.NodeViews.Supervision do
  @moduledoc """
  A supervisor's children on this node, expanded lazily to a depth, one
  page at a time (what the node computes about itself for the
  `supervision_tree` operation).

  ## What is read, and why this way

  For each supervisor expanded, one short-lived helper process makes three
  calls to it, in order, and is killed at the deadline:

    * `:supervisor.count_children/1` - the counts (specs, active,
      supervisors, workers): a small reply whatever the size;
    * `:supervisor.which_children/1` - only when the supervisor has at most
      #{100_000} child specs (else the children are not listed and the
      answer says `too_many_children`); the list is copied into the helper
      on this node and only the requested page crosses the network;
    * `:sys.get_state/2` - for the restart strategy, intensity and period,
      which no supervisor call returns (`supervisor:get_childspec/2` gives
      a child's spec, not the supervisor's flags; calling the callback's
      `init/1` again could have side effects). `:sys.get_status/2` would
      copy the same state plus the process dictionary, so `get_state` is
      the cheaper of the two. Only three fields are kept (OTP's
      `#state{}` record: strategy, intensity, period; Elixir's
      `DynamicSupervisor`: strategy, max_restarts, max_seconds); the copy
      lives in the helper only, which exits right after, so the state's
      contents (the start arguments of its children) never leave it.

  All three calls are `gen` calls without a timeout of their own
  (`which_children` waits forever): a supervisor that is suspended
  (`:sys.suspend/1`), blocked in a child's `init/1` or busy restarting
  never answers in time. The helper is killed at the deadline
  (`call_timeout_ms`, default 1,000 ms) and the supervisor is reported
  `stuck`, never waited on. A late reply to the killed helper is dropped
  by the runtime.

  ## Bounds

    * `depth` (1..#{3}): 1 lists the root's children; 2 expands each child
      supervisor of that page too, and so on. Supervisors of one level are
      expanded in parallel, each with its own helper, so a level costs at
      most one `call_timeout_ms` however many are stuck.
    * `limit` (1..#{500}) children per supervisor and per call, from
      `offset` for the root (`next_offset` when there are more); a child
      supervisor's further pages are asked with it as the root.
    * At most #{32} supervisors are expanded per call; the others are
      listed with `expanded: false`.
    * Paging is by position in `which_children`'s order: children started
      or stopped between two pages can shift it (a child listed twice or
      skipped), as in Observer.

  ## Cost on the node

  Per supervisor expanded: one process spawn, the three calls (the
  supervisor answers them between its own messages; `which_children` and
  `get_state` are O(children) in the supervisor), and the copy of the
  children list in the helper. A tree of 30 supervisors at depth 3 costs
  30 such reads; a `simple_one_for_one` supervisor of 100,000 children
  costs one count and no listing. Measured on a loaded 2-core x86-64
  (median): ClusterScope's own tree at depth 3 (4 supervisors expanded)
  80-260 us; the applications' top supervisors 33 us; one page of 50 of a
  DynamicSupervisor of 10,000 children 11.7 ms (the copies of its children
  list and state dominate).

  Recent restarts come from `ClusterScope.NodeViews.SupervisorReports`
  (an ETS read per supervisor listed).

  Without a root (`tree(:applications, opts)`), the children are the top
  supervisors of the started applications (sorted by name, paged like any
  children; each application master asked in a helper under the
  deadline, all at once; library applications, which have none, are left
  out).

  Only OTP calls and this node's own processes are used. The root is an
  application's top supervisor (its name compared as text with the loaded
  applications, read from the application controller's table without a
  call to it; the top supervisor asked of the application master under the
  deadline: no atom is created), a registered name (compared as text) or a
  pid of this node. Checking that a pid is a supervisor reads its process
  dictionary (`$initial_call`), so it costs what that dictionary weighs.
  """

  alias ClusterScope.NodeViews.SupervisorReports

  @max_depth 3
  @max_limit 500
  @max_expansions 32
  @max_listed 100_000
  @default_call_timeout 1_000
  @max_call_timeout 2_000
  @text_limit 200

  @typedoc "What to expand."
  @type root ::
          {:pid, pid()}
          | {:local_pid, non_neg_integer(), non_neg_integer()}
          | {:name, String.t()}

  @typedoc "Options: `depth`, `limit`, `offset`, `call_timeout_ms`."
  @type opts :: %{
          optional(:depth) => pos_integer(),
          optional(:limit) => pos_integer(),
          optional(:offset) => non_neg_integer(),
          optional(:call_timeout_ms) => pos_integer()
        }

  @doc "The largest depth a call expands."
  @spec max_depth() :: pos_integer()
  def max_depth, do: @max_depth

  @doc "The largest page of children per supervisor."
  @spec max_limit() :: pos_integer()
  def max_limit, do: @max_limit

  @doc "The largest per-supervisor deadline, in ms."
  @spec max_call_timeout() :: pos_integer()
  def max_call_timeout, do: @max_call_timeout

  @doc """
  Expands `root` on this node. Returns `{:ok, tree}` where `tree` is the
  root supervisor (pid, name, how it was found, `status`, `flags`,
  `counts`, `children` page, `next_offset`, `recent_restarts`), each child
  supervisor of the page expanded the same way down to `depth`; or
  `{:error, {code, message}}` with `code` one of `:not_found` (no such
  application, name or process), `:no_supervisor` (an application without
  a top supervisor, a library application), `:not_supervisor`, `:stuck`
  (the root did not answer within the deadline).

  Cost: see the module documentation; at most `call_timeout_ms` per level
  (plus the resolution of an application's top supervisor, one more).
  """
  @spec tree(root() | :applications, opts()) :: {:ok, map()} | {:error, {atom(), String.t()}}
  def tree(root, opts \\ %{})

  def tree(:applications, opts) do
    opts = normalize(opts)

    apps =
      for {app, _, _} <- :application.loaded_applications(),
          master = :application_controller.get_master(app),
          is_pid(master),
          do: {Atom.to_string(app), master}

    apps = Enum.sort(apps)
    page = apps |> Enum.drop(opts.offset) |> Enum.take(opts.limit)

    # Each application master answers in its own helper, all at once.
    children =
      page
      |> Enum.map(fn {_name, master} ->
        fn -> :application_master.get_child(master) end
      end)
      |> bounded_all(opts.call_timeout_ms)
      |> Enum.zip(page)
      |> Enum.map(fn {answer, {name, _master}} -> app_child(name, answer) end)

    node = %{
      pid: nil,
      name: nil,
      found_by: :applications,
      status: :running,
      expansion: :ok,
      expanded: true,
      flags: nil,
      counts: %{specs: length(apps)},
      offset: opts.offset,
      children: children,
      next_offset: if(opts.offset + opts.limit < length(apps), do: opts.offset + opts.limit),
      recent_restarts: nil
    }

    {:ok, descend(node, opts.depth - 1, opts)}
  end

  def tree(root, opts) do
    opts = normalize(opts)

    with {:ok, pid, how} <- resolve(root, opts.call_timeout_ms),
         :ok <- check_supervisor(pid) do
      [expansion] = expand_all([{pid, opts.offset}], opts)

      case expansion do
        %{expansion: :stuck} ->
          {:error,
           {:stuck,
            "supervisor #{inspect(pid)} did not answer within #{opts.call_timeout_ms} ms " <>
              "(suspended, blocked starting a child, or overloaded)"}}

        %{expansion: :dead} ->
          {:error, {:not_found, "process #{inspect(pid)} is not alive"}}

        _ ->
          node = %{pid: pid, name: registered_name(pid), found_by: how, status: :running}
          {:ok, descend(Map.merge(node, expansion), opts.depth - 1, opts)}
      end
    end
  end

  @doc """
  The same view of a connected node that runs no ClusterScope, made from
  here with OTP calls only, each through `ClusterScope.Fanout.rpc/5`:
  `gen_server:call/3` of `count_children` and `which_children` with the
  deadline as their own timeout (so nothing is left waiting on that node
  when a supervisor is stuck), `proc_lib:initial_call/1` to check that the
  root is a supervisor, and for an application's name the loaded
  applications, its master and the master's child.

  What differs from `tree/2`: `flags` is `nil` (the strategy and intensity
  are only in the supervisor's state, and `:sys.get_state/2` would ship
  that whole state, with its children's start arguments, across the
  network); `recent_restarts` is `nil` (no handler runs there); the whole
  children list of a supervisor crosses the network once per page (the
  page is cut here); registered names are not roots (the node's list of
  names would come here as atoms). `application_master:get_child/1` has no
  timeout of its own: a master that does not answer is reported stuck,
  and the call there waits until it does.

  Cost on the node: per supervisor expanded, two calls to it (as
  `tree/2`); the levels are expanded from here, one round trip each.
  """
  @spec tree_remote(node(), root() | :applications, opts()) ::
          {:ok, map()} | {:error, {atom(), String.t()}}
  def tree_remote(node, root, opts) do
    opts = opts |> normalize() |> Map.put(:remote, node)
    t = opts.call_timeout_ms

    with {:ok, pid, how} <- remote_resolve(node, root, t),
         :ok <- remote_check(node, pid, t) do
      [expansion] = expand_all([{pid, opts.offset}], opts)

      case expansion do
        %{expansion: :stuck} ->
          {:error,
           {:stuck,
            "supervisor #{inspect(pid)} on #{node} did not answer within #{t} ms " <>
              "(suspended, blocked starting a child, or overloaded)"}}

        %{expansion: :dead} ->
          {:error, {:not_found, "process #{inspect(pid)} is not alive on #{node}"}}

        _ ->
          top = %{pid: pid, name: nil, found_by: how, status: :running}
          {:ok, descend(Map.merge(top, expansion), opts.depth - 1, opts)}
      end
    end
  end

  defp remote_resolve(node, {:local_pid, id, serial}, t) do
    case remote(node, :erlang, :list_to_pid, [~c"<0.#{id}.#{serial}>"], t) do
      {:ok, pid} when is_pid(pid) ->
        {:ok, pid, :pid}

      _ ->
        {:error, {:not_found, "no process <0.#{id}.#{serial}> can exist on #{node}"}}
    end
  end

  defp remote_resolve(node, {:name, text}, t) when is_binary(text) do
    with {:ok, apps} when is_list(apps) <-
           remote(node, :application, :loaded_applications, [], t),
         {app, _, _} <- Enum.find(apps, fn {app, _, _} -> Atom.to_string(app) == text end),
         {:ok, master} when is_pid(master) <-
           remote(node, :application_controller, :get_master, [app], t) do
      case remote(node, :application_master, :get_child, [master], t) do
        {:ok, {pid, _mod}} when is_pid(pid) ->
          {:ok, pid, {:application, app}}

        {:ok, _} ->
          {:error, {:no_supervisor, "application #{app} has no top supervisor on #{node}"}}

        {:error, {:erpc, :timeout}} ->
          {:error, {:stuck, "the application master of #{app} did not answer in #{t} ms"}}

        {:error, reason} ->
          {:error, {:not_found, "application #{app} on #{node}: #{short(reason)}"}}
      end
    else
      {:ok, _} ->
        {:error,
         {:no_supervisor,
          "application #{short_text(text)} is loaded on #{node} but has no application master"}}

      nil ->
        {:error,
         {:not_found,
          "no loaded application named #{short_text(text)} on #{node} (a node without " <>
            "ClusterScope takes an application name or a pid as root)"}}

      {:error, reason} ->
        {:error, {:unreachable, "#{node}: #{short(reason)}"}}
    end
  end

  defp remote_resolve(node, :applications, _t),
    do:
      {:error,
       {:not_found, "#{node} runs no ClusterScope: give an application name or a pid as root"}}

  defp remote_resolve(node, other, _t),
    do: {:error, {:not_found, "not a root on #{node}: #{short(other)}"}}

  defp remote_check(node, pid, t) do
    case remote(node, :erlang, :is_process_alive, [pid], t) do
      {:ok, true} ->
        case remote(node, :proc_lib, :initial_call, [pid], t) do
          {:ok, {:supervisor, _, _}} ->
            :ok

          {:ok, other} ->
            {:error,
             {:not_supervisor,
              "process #{inspect(pid)} is not a supervisor (started as #{short(other)})"}}

          {:error, reason} ->
            {:error, {:unreachable, "#{node}: #{short(reason)}"}}
        end

      {:ok, false} ->
        {:error, {:not_found, "process #{inspect(pid)} is not alive on #{node}"}}

      {:error, reason} ->
        {:error, {:unreachable, "#{node}: #{short(reason)}"}}
    end
  end

  # One call through Fanout, a little longer than the deadline the call
  # itself carries.
  defp remote(node, m, f, a, t), do: ClusterScope.Fanout.rpc(node, m, f, a, t + 1_000)

  defp remote_expand_all(node, targets, opts) do
    t = opts.call_timeout_ms

    targets
    |> Task.async_stream(fn {pid, offset} -> remote_read(node, pid, offset, opts) end,
      timeout: t * 2 + 3_000,
      on_timeout: :kill_task,
      max_concurrency: @max_expansions
    )
    |> Enum.map(fn
      {:ok, result} -> result
      {:exit, _} -> %{expansion: :stuck}
    end)
    |> Enum.map(&(&1 |> Map.put(:expanded, true) |> Map.put(:recent_restarts, nil)))
  end

  defp remote_read(node, pid, offset, %{limit: limit, max_listed: max_listed} = opts) do
    t = opts.call_timeout_ms

    with {:ok, counts} when is_list(counts) <-
           remote(node, :gen_server, :call, [pid, :count_children, t], t) do
      counts = Map.new(counts)

      if Map.get(counts, :specs, 0) > max_listed do
        %{
          expansion: :ok,
          flags: nil,
          counts: counts,
          children: nil,
          children_error: :too_many_children,
          next_offset: nil
        }
      else
        case remote(node, :gen_server, :call, [pid, :which_children, t], t) do
          {:ok, all} when is_list(all) ->
            page = all |> Enum.drop(offset) |> Enum.take(limit)

            %{
              expansion: :ok,
              flags: nil,
              counts: counts,
              offset: offset,
              children: Enum.map(page, &child/1),
              next_offset: if(offset + limit < length(all), do: offset + limit)
            }

          other ->
            remote_failed(other)
        end
      end
    else
      other -> remote_failed(other)
    end
  end

  defp remote_failed({:error, {:exit, {:timeout, _}}}), do: %{expansion: :stuck}
  defp remote_failed({:error, {:erpc, :timeout}}), do: %{expansion: :stuck}
  defp remote_failed({:error, {:exit, {:noproc, _}}}), do: %{expansion: :dead}
  defp remote_failed({:error, {:exit, {:normal, _}}}), do: %{expansion: :dead}

  defp remote_failed(other),
    do: %{expansion: :error, error: "the supervisor's answer failed: #{short(other)}"}

  defp normalize(opts) do
    opts = Map.new(opts)

    %{
      depth: opts |> Map.get(:depth, 1) |> clamp(1, @max_depth),
      limit: opts |> Map.get(:limit, 50) |> clamp(1, @max_limit),
      offset: opts |> Map.get(:offset, 0) |> clamp(0, 100_000_000),
      call_timeout_ms:
        opts |> Map.get(:call_timeout_ms, @default_call_timeout) |> clamp(1, @max_call_timeout),
      # Tests lower it; the operation never passes it.
      max_listed: opts |> Map.get(:max_listed, @max_listed) |> clamp(0, @max_listed)
    }
  end

  defp clamp(v, lo, hi) when is_integer(v), do: v |> max(lo) |> min(hi)
  defp clamp(_v, lo, _hi), do: lo

  # -- the root ---------------------------------------------------------------------

  # A pid given by its numbers on this node (`<0.ID.SERIAL>` here).
  defp resolve({:local_pid, id, serial}, timeout)
       when is_integer(id) and id >= 0 and is_integer(serial) and serial >= 0 do
    resolve({:pid, :erlang.list_to_pid(~c"<0.#{id}.#{serial}>")}, timeout)
  rescue
    # Numbers past what a pid of this node can be.
    ArgumentError ->
      {:error, {:not_found, "no process <0.#{id}.#{serial}> can exist on #{node()}"}}
  end

  defp resolve({:pid, pid}, _timeout) when is_pid(pid) and node(pid) == node() do
    if Process.alive?(pid),
      do: {:ok, pid, :pid},
      else: {:error, {:not_found, "process #{inspect(pid)} is not alive on #{node()}"}}
  end

  defp resolve({:pid, pid}, _timeout) when is_pid(pid),
    do: {:error, {:not_found, "process #{inspect(pid)} does not live on #{node()}"}}

  defp resolve({:name, text}, timeout) when is_binary(text) do
    case application(text) do
      {:ok, app} -> top_supervisor(app, timeout)
      :error -> registered(text)
    end
  end

  defp resolve(other, _timeout),
    do: {:error, {:not_found, "not a root: #{inspect(other, limit: 5)}"}}

  # The loaded applications are read from the application controller's
  # table (no call to the controller, which can be busy starting an
  # application); the name is compared as text.
  defp application(text) do
    found =
      Enum.find(:application.loaded_applications(), fn {app, _, _} ->
        Atom.to_string(app) == text
      end)

    case found do
      {app, _, _} -> {:ok, app}
      nil -> :error
    end
  end

  defp top_supervisor(app, timeout) do
    case :application_controller.get_master(app) do
      master when is_pid(master) ->
        # application_master:get_child/1 waits without a timeout: a helper.
        case bounded(fn -> :application_master.get_child(master) end, timeout) do
          {:ok, {pid, _mod}} when is_pid(pid) ->
            {:ok, pid, {:application, app}}

          {:ok, _} ->
            {:error,
             {:no_supervisor, "application #{app} has no top supervisor (a library application)"}}

          :timeout ->
            {:error, {:stuck, "the application master of #{app} did not answer in #{timeout} ms"}}

          {:error, reason} ->
            {:error, {:not_found, "application #{app} stopped: #{short(reason)}"}}
        end

      _ ->
        {:error,
         {:no_supervisor,
          "application #{app} is loaded but has no application master: it is not started, " <>
            "or it is a library application (no top supervisor)"}}
    end
  end

  defp registered(text) do
    case Enum.find(Process.registered(), &(Atom.to_string(&1) == text)) do
      nil ->
        {:error,
         {:not_found,
          "no loaded application and no registered process named #{short_text(text)} on #{node()}"}}

      name ->
        case Process.whereis(name) do
          pid when is_pid(pid) -> {:ok, pid, {:registered, name}}
          _ -> {:error, {:not_found, "#{name} is not running on #{node()}"}}
        end
    end
  end

  # A supervisor is what proc_lib records as started by `supervisor`
  # (Elixir's DynamicSupervisor records the same, for Observer).
  defp check_supervisor(pid) do
    case Process.info(pid, :dictionary) do
      nil ->
        {:error, {:not_found, "process #{inspect(pid)} is not alive on #{node()}"}}

      {:dictionary, dict} ->
        case List.keyfind(dict, :"$initial_call", 0) do
          {_, {:supervisor, _, _}} ->
            :ok

          other ->
            started =
              case other do
                {_, mfa} -> "started as #{short(mfa)}"
                nil -> "not started through proc_lib"
              end

            {:error,
             {:not_supervisor, "process #{inspect(pid)} is not a supervisor (#{started})"}}
        end
    end
  end

  # -- expansion --------------------------------------------------------------------

  defp descend(node, 0, _opts), do: mark_unexpanded(node)

  defp descend(node, levels, opts) do
    # Breadth first: every child supervisor of this level at once.
    {tree, _budget} = descend_levels([node], levels, opts, @max_expansions - 1)
    hd(tree)
  end

  defp descend_levels(nodes, 0, _opts, budget), do: {Enum.map(nodes, &mark_unexpanded/1), budget}

  defp descend_levels(nodes, levels, opts, budget) do
    targets =
      for node <- nodes,
          is_list(node[:children]),
          child <- node.children,
          child.type == :supervisor and is_pid(child.pid),
          do: child.pid

    {now, _later} = Enum.split(targets, max(budget, 0))
    expansions = Map.new(Enum.zip(now, expand_all(Enum.map(now, &{&1, 0}), opts)))
    budget = budget - length(now)

    # The expanded children of every node, then their own children, one
    # level down.
    expanded_children =
      for node <- nodes,
          is_list(node[:children]),
          child <- node.children,
          Map.has_key?(expansions, child.pid),
          do: Map.merge(child, expansions[child.pid])

    {deeper, budget} = descend_levels(expanded_children, levels - 1, opts, budget)
    deeper = Map.new(deeper, &{&1.pid, &1})

    nodes =
      Enum.map(nodes, fn node ->
        case node[:children] do
          children when is_list(children) ->
            %{node | children: Enum.map(children, &Map.get(deeper, &1.pid, unexpanded(&1)))}

          _ ->
            node
        end
      end)

    {nodes, budget}
  end

  defp mark_unexpanded(%{children: children} = node) when is_list(children),
    do: %{node | children: Enum.map(children, &unexpanded/1)}

  defp mark_unexpanded(node), do: node

  defp unexpanded(%{type: :supervisor, pid: pid} = child)
       when is_pid(pid) and not is_map_key(child, :expanded) do
    child
    |> Map.put(:expanded, false)
    |> Map.put(:recent_restarts, SupervisorReports.for_supervisor(pid))
  end

  defp unexpanded(child), do: child

  # One helper per supervisor, all at once, one common deadline.
  defp expand_all(targets, %{remote: node} = opts) when is_atom(node) and node != nil,
    do: remote_expand_all(node, targets, opts)

  defp expand_all(targets, opts) do
    deadline = System.monotonic_time(:millisecond) + opts.call_timeout_ms

    helpers =
      for {pid, offset} <- targets do
        spawn_monitor(fn -> exit({:cs_expansion, read(pid, offset, opts)}) end)
      end

    Enum.zip_with(targets, helpers, fn {pid, _}, {helper, ref} ->
      wait = max(deadline - System.monotonic_time(:millisecond), 0)

      result =
        receive do
          {:DOWN, ^ref, :process, ^helper, {:cs_expansion, result}} -> result
          {:DOWN, ^ref, :process, ^helper, reason} -> call_failed(pid, reason)
        after
          wait ->
            Process.exit(helper, :kill)

            receive do
              {:DOWN, ^ref, :process, ^helper, {:cs_expansion, result}} -> result
              {:DOWN, ^ref, :process, ^helper, _} -> %{expansion: :stuck}
            end
        end

      result
      |> Map.put(:expanded, true)
      |> Map.put(:recent_restarts, SupervisorReports.for_supervisor(pid))
    end)
  end

  defp call_failed(pid, reason) do
    if Process.alive?(pid),
      do: %{expansion: :error, error: "the supervisor's answer failed: #{short(reason)}"},
      else: %{expansion: :dead}
  end

  # In the helper: the three calls, in order.
  defp read(pid, offset, %{limit: limit, max_listed: max_listed}) do
    counts = Map.new(:supervisor.count_children(pid))
    specs = Map.get(counts, :specs, 0)
    flags = flags(pid)

    if specs > max_listed do
      %{
        expansion: :ok,
        flags: flags,
        counts: counts,
        children: nil,
        children_error: :too_many_children,
        next_offset: nil
      }
    else
      all = :supervisor.which_children(pid)
      page = all |> Enum.drop(offset) |> Enum.take(limit)
      total = length(all)

      %{
        expansion: :ok,
        flags: flags,
        counts: counts,
        offset: offset,
        children: Enum.map(page, &child/1),
        next_offset: if(offset + limit < total, do: offset + limit)
      }
    end
  end

  defp flags(pid) do
    case :sys.get_state(pid, :infinity) do
      # OTP's #state{name, strategy, children, dynamics, intensity, period, ...}
      state when is_tuple(state) and tuple_size(state) >= 7 and elem(state, 0) == :state ->
        %{strategy: elem(state, 2), intensity: elem(state, 5), period: elem(state, 6)}

      %{__struct__: DynamicSupervisor} = state ->
        %{
          strategy: Map.get(state, :strategy),
          intensity: Map.get(state, :max_restarts),
          period: Map.get(state, :max_seconds)
        }

      _ ->
        nil
    end
  end

  defp child({id, child, type, modules}) do
    %{
      id: child_id(id),
      pid: if(is_pid(child), do: child),
      type: type,
      modules: modules_text(modules),
      status:
        cond do
          is_pid(child) -> :running
          child == :restarting -> :restarting
          true -> :not_running
        end
    }
  end

  defp child_id(:undefined), do: nil
  defp child_id(id) when is_atom(id), do: inspect(id)
  defp child_id(id), do: short(id)

  defp modules_text(:dynamic), do: "dynamic"
  defp modules_text(mods) when is_list(mods), do: Enum.map(Enum.take(mods, 5), &inspect/1)
  defp modules_text(_), do: []

  defp registered_name(pid) do
    case Process.info(pid, :registered_name) do
      {:registered_name, name} when is_atom(name) -> inspect(name)
      _ -> nil
    end
  end

  defp app_child(name, {:ok, {pid, mod}}) when is_pid(pid),
    do: %{id: name, pid: pid, type: :supervisor, modules: [inspect(mod)], status: :running}

  defp app_child(name, {:ok, _}),
    do: %{id: name, pid: nil, type: :supervisor, modules: [], status: :not_running}

  defp app_child(name, :timeout),
    do: %{id: name, pid: nil, type: :supervisor, modules: [], status: :stuck}

  defp app_child(name, {:error, _}),
    do: %{id: name, pid: nil, type: :supervisor, modules: [], status: :not_running}

  # Runs each function in a helper, all at once, every helper killed at one
  # common deadline: `{:ok, value}`, `{:error, reason}` or `:timeout` each.
  defp bounded_all(funs, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    helpers = Enum.map(funs, fn fun -> spawn_monitor(fn -> exit({:cs_bounded, fun.()}) end) end)

    Enum.map(helpers, fn {pid, ref} ->
      wait = max(deadline - System.monotonic_time(:millisecond), 0)
      await_helper(pid, ref, wait)
    end)
  end

  defp await_helper(pid, ref, wait) do
    receive do
      {:DOWN, ^ref, :process, ^pid, {:cs_bounded, value}} -> {:ok, value}
      {:DOWN, ^ref, :process, ^pid, reason} -> {:error, reason}
    after
      wait ->
        Process.exit(pid, :kill)

        receive do
          {:DOWN, ^ref, :process, ^pid, {:cs_bounded, value}} -> {:ok, value}
          {:DOWN, ^ref, :process, ^pid, _} -> :timeout
        end
    end
  end

  # Runs `fun` in a helper killed after `timeout`.
  defp bounded(fun, timeout) do
    {pid, ref} = spawn_monitor(fn -> exit({:cs_bounded, fun.()}) end)
    await_helper(pid, ref, timeout)
  end

  defp short(term), do: inspect(term, limit: 8, printable_limit: @text_limit)

  defp short_text(text) when byte_size(text) > 60, do: inspect(binary_part(text, 0, 60) <> "...")
  defp short_text(text), do: inspect(text)
end
