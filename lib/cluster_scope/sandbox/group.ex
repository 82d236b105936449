defmodule ClusterScope.Sandbox.Group do
  @moduledoc """
  One sandbox's part on one node: a small supervisor (a GenServer that
  traps exits) of the sandbox's processes placed on this node.

  It holds what the sandbox is (its definition, the placement of every
  process - slot -> node - and the placement's epoch), so the state of a
  sandbox lives on the nodes that run it and survives a restart of
  `ClusterScope.Sandbox.Manager`. It joins the `:pg` group `{:sandbox, id}`
  of scope `:cluster_scope_sandboxes` (how every node finds the sandbox) and
  keeps `{:cluster_scope_sandbox, summary}` in its process dictionary: the
  processes it starts are its children (`Process.info(pid, :parent)`, the
  runtime's own parent, not `$ancestors`), which is how
  `ClusterScope.Sandbox.sandbox_of/1` and `ClusterScope.Sandbox.topology/0`
  find their sandbox without calling anyone.

  Children are started with their start function (linked to this process);
  a child that exits is restarted per its `restart` type, at most 5 times in
  5 s per slot, after which the slot is marked failed (the group lives on:
  a crashing sandbox never takes the node's tree down). Stopping the group
  stops its children (`shutdown` each, then killed).

  Cost: a start or an apply is one start call per process placed here;
  `info` reads each child's status (`Process.info/2`), O(processes here).
  """

  use GenServer

  @scope :cluster_scope_sandboxes
  @max_restarts 5
  @restart_window_ms 5_000

  @doc false
  def child_spec({definition, _placement, _epoch} = arg) do
    %{
      id: {__MODULE__, definition.id},
      start: {__MODULE__, :start_link, [arg]},
      restart: :temporary,
      shutdown: 30_000,
      type: :worker
    }
  end

  @doc "Starts the part of a sandbox for this node (under the node supervisor)."
  @spec start_link({map(), tuple(), epoch()}) :: GenServer.on_start()
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)

  @doc "The `:pg` scope of sandboxes."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc """
  Applies a new placement of `epoch`: starts the slots placed here that do
  not run, stops the ones placed elsewhere. An older epoch is ignored.
  """
  @spec apply_placement(pid(), tuple(), epoch(), timeout()) ::
          {:ok, map()} | {:error, term()}
  def apply_placement(group, placement, epoch, timeout \\ 30_000),
    do: GenServer.call(group, {:apply, placement, epoch}, timeout)

  @typedoc """
  A placement's epoch: `{counter, node that decided it}`, compared as a
  term, so two placements decided at once on two sides of a split never
  tie: every node ends with the same one.
  """
  @type epoch :: {pos_integer(), node()}

  @doc "The first epoch, decided here."
  @spec first_epoch() :: epoch()
  def first_epoch, do: {1, node()}

  @doc "The epoch after `epoch`, decided here."
  @spec next_epoch(epoch()) :: epoch()
  def next_epoch({n, _}), do: {n + 1, node()}

  @doc "The counter of an epoch (what answers show)."
  @spec counter(epoch()) :: pos_integer()
  def counter({n, _}), do: n

  @doc "Definition, placement and epoch."
  @spec meta(pid(), timeout()) :: map()
  def meta(group, timeout \\ 5_000), do: GenServer.call(group, :meta, timeout)

  @doc "Definition, placement, epoch and this node's processes with their status."
  @spec info(pid(), timeout()) :: map()
  def info(group, timeout \\ 5_000), do: GenServer.call(group, :info, timeout)

  # -- server ----------------------------------------------------------------------------

  @impl true
  def init({definition, placement, epoch}) do
    Process.flag(:trap_exit, true)

    state = %{
      definition: definition,
      placement: placement,
      epoch: epoch,
      slots: %{},
      pids: %{},
      restarts: %{}
    }

    # Joined at once (so a rollback finds this part while it starts) and
    # tagged first (a child may read its sandbox in its init). The children
    # start after init returns: the node supervisor is never held by a
    # child whose start hangs; `await_started/2` waits with a deadline.
    # Membership dies with the :pg scope process: joined again when it restarts.
    :ok = ClusterScope.PgMembership.join(@scope, {:sandbox, definition.id})
    # No supervisor holds this part: it stops with ClusterScope on this node
    # (its top supervisor ends only when the application stops).
    Process.monitor(ClusterScope.Supervisor)
    {:ok, tag(state), {:continue, :start}}
  end

  @impl true
  def handle_continue(:start, state) do
    case start_slots(state, mine(state.placement)) do
      {:ok, state} ->
        {:noreply, state}

      {:error, slot, reason, state} ->
        {:stop,
         {:shutdown,
          "process #{slot} (#{inspect(template(state.definition, slot).module)}) did not start on " <>
            "#{node()}: #{inspect(reason, limit: 10)}"}, state}
    end
  end

  @doc """
  Waits until the part has started its children (`:ok`), or answers why
  it could not (`{:error, text}`: a child that did not start, or the
  deadline).
  """
  @spec await_started(pid(), timeout()) :: :ok | {:error, String.t()}
  def await_started(group, timeout) do
    GenServer.call(group, :started, timeout)
  catch
    :exit, {{:shutdown, text}, _} when is_binary(text) ->
      {:error, text}

    :exit, {:timeout, _} ->
      {:error, "its processes did not start within #{timeout} ms on #{node()}"}

    :exit, reason ->
      {:error, "the part stopped on #{node()}: #{inspect(reason, limit: 10)}"}
  end

  @impl true
  def handle_call({:apply, _placement, epoch}, _from, state) when epoch < state.epoch,
    do: {:reply, {:ok, %{stale: true, epoch: counter(state.epoch)}}, state}

  def handle_call({:apply, placement, epoch}, _from, state) do
    wanted = MapSet.new(mine(placement))
    running = MapSet.new(Map.keys(state.slots))
    to_stop = MapSet.difference(running, wanted) |> Enum.sort()
    to_start = MapSet.difference(wanted, running) |> Enum.sort()
    state = Enum.reduce(to_stop, state, &stop_slot(&2, &1))
    state = tag(%{state | placement: placement, epoch: epoch})

    case start_slots(state, to_start) do
      {:ok, state} ->
        {:reply,
         {:ok, %{started: length(to_start), stopped: length(to_stop), epoch: counter(epoch)}},
         tag(state)}

      {:error, slot, reason, state} ->
        {:reply, {:error, "process #{slot} did not start on #{node()}: #{inspect(reason)}"},
         tag(state)}
    end
  end

  def handle_call(:started, _from, state), do: {:reply, :ok, state}

  def handle_call(:meta, _from, state),
    do:
      {:reply, %{definition: state.definition, placement: state.placement, epoch: state.epoch},
       state}

  def handle_call(:info, _from, state) do
    processes =
      state.slots
      |> Enum.sort()
      |> Enum.map(fn {slot, value} ->
        t = template(state.definition, slot)

        case value do
          pid when is_pid(pid) ->
            status =
              case Process.info(pid, :status) do
                {:status, s} -> s
                nil -> :exited
              end

            %{slot: slot, pid: pid, module: t.module, status: status}

          {:failed, reason} ->
            %{slot: slot, pid: nil, module: t.module, status: :failed, reason: reason}
        end
      end)

    {:reply,
     %{
       definition: state.definition,
       placement: state.placement,
       epoch: state.epoch,
       processes: processes
     }, state}
  end

  @impl true
  def handle_info({:EXIT, pid, reason}, state) do
    case Map.pop(state.pids, pid) do
      {nil, _} ->
        # Our parent (the node supervisor) or a stray link.
        if pid == parent(), do: {:stop, reason, state}, else: {:noreply, state}

      {slot, pids} ->
        state = %{state | pids: pids, slots: Map.delete(state.slots, slot)}
        {:noreply, tag(restart(state, slot, reason))}
    end
  end

  def handle_info({:DOWN, _ref, :process, {ClusterScope.Supervisor, _}, _}, state),
    do: {:stop, :shutdown, state}

  def handle_info(other, state) do
    # The :pg scope restarted: join the sandbox's group again.
    ClusterScope.PgMembership.handle(other, {@scope, {:sandbox, state.definition.id}})
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, state), do: stop_all(state)

  # -- slots -----------------------------------------------------------------------------

  defp mine(placement) do
    me = node()

    for i <- 0..(tuple_size(placement) - 1)//1, elem(placement, i) == me, do: i
  end

  @doc false
  # The child template of slot `slot`: children are laid out in order,
  # each `count` times.
  def template(definition, slot) do
    Enum.reduce_while(definition.children, slot, fn t, left ->
      if left < t.count, do: {:halt, t}, else: {:cont, left - t.count}
    end)
  end

  defp start_slots(state, slots) do
    Enum.reduce_while(slots, {:ok, state}, fn slot, {:ok, state} ->
      case start_child(template(state.definition, slot)) do
        {:ok, pid} ->
          {:cont, {:ok, put_slot(state, slot, pid)}}

        {:error, reason} ->
          {:halt, {:error, slot, reason, state}}
      end
    end)
  end

  defp put_slot(state, slot, pid),
    do: %{state | slots: Map.put(state.slots, slot, pid), pids: Map.put(state.pids, pid, slot)}

  defp start_child(t) do
    case apply(t.module, t.function, t.args) do
      {:ok, pid} when is_pid(pid) -> {:ok, pid}
      {:ok, pid, _info} when is_pid(pid) -> {:ok, pid}
      :ignore -> {:error, :ignore}
      {:error, reason} -> {:error, reason}
      other -> {:error, {:bad_return, other}}
    end
  catch
    kind, reason -> {:error, {kind, reason}}
  end

  defp restart(state, slot, reason) do
    t = template(state.definition, slot)

    if restart?(t.restart, reason) do
      now = System.monotonic_time(:millisecond)

      recent =
        [now | Map.get(state.restarts, slot, [])]
        |> Enum.filter(&(now - &1 < @restart_window_ms))

      state = %{state | restarts: Map.put(state.restarts, slot, recent)}

      if length(recent) > @max_restarts do
        failed(state, slot, "restarted #{@max_restarts} times in #{@restart_window_ms} ms")
      else
        case start_child(t) do
          {:ok, pid} -> put_slot(state, slot, pid)
          {:error, r} -> failed(state, slot, "restart failed: #{inspect(r, limit: 10)}")
        end
      end
    else
      state
    end
  end

  defp failed(state, slot, text),
    do: %{state | slots: Map.put(state.slots, slot, {:failed, text})}

  defp restart?(:permanent, _), do: true
  defp restart?(:temporary, _), do: false

  defp restart?(:transient, reason),
    do: reason not in [:normal, :shutdown] and not shutdown?(reason)

  defp shutdown?({:shutdown, _}), do: true
  defp shutdown?(_), do: false

  defp stop_slot(state, slot) do
    case Map.pop(state.slots, slot) do
      {pid, slots} when is_pid(pid) ->
        shutdown([{pid, template(state.definition, slot).shutdown}])
        %{state | slots: slots, pids: Map.delete(state.pids, pid)}

      {_, slots} ->
        %{state | slots: slots}
    end
  end

  defp stop_all(state) do
    state.pids
    |> Enum.map(fn {pid, slot} -> {pid, template(state.definition, slot).shutdown} end)
    |> shutdown()
  end

  # Sends every child `:shutdown`, waits for their exits up to the longest
  # shutdown, then kills what is left.
  defp shutdown([]), do: :ok

  defp shutdown(children) do
    Enum.each(children, fn {pid, _} -> Process.exit(pid, :shutdown) end)
    deadline = System.monotonic_time(:millisecond) + Enum.max(Enum.map(children, &elem(&1, 1)))
    wait(Map.new(children, fn {pid, _} -> {pid, true} end), deadline)
  end

  # Only the exits of the children being stopped are taken here: another
  # child's exit stays in the mailbox for handle_info (its restart).
  defp wait(left, _deadline) when map_size(left) == 0, do: :ok

  defp wait(left, deadline) do
    remaining = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {:EXIT, pid, _} when is_map_key(left, pid) -> wait(Map.delete(left, pid), deadline)
    after
      remaining ->
        for {pid, _} <- left do
          Process.exit(pid, :kill)
          receive do: ({:EXIT, ^pid, _} -> :ok), after: (1_000 -> :ok)
        end

        :ok
    end
  end

  defp parent do
    case Process.get(:"$ancestors") do
      [p | _] when is_pid(p) -> p
      [name | _] when is_atom(name) -> Process.whereis(name)
      _ -> nil
    end
  end

  # The summary processes of the sandbox read from this process's dictionary.
  defp tag(state) do
    d = state.definition

    Process.put(:cluster_scope_sandbox, %{
      id: d.id,
      name: d.name,
      epoch: counter(state.epoch),
      nodes: state.placement |> Tuple.to_list() |> Enum.frequencies()
    })

    state
  end
end
