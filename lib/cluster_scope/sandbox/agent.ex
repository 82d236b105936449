defmodule ClusterScope.Sandbox.Agent do
  @moduledoc """
  What a node does about its own part of sandboxes. Every function here runs
  on the node concerned: called locally, or by another node through
  `ClusterScope.Fanout` (never calling further nodes itself).

  The parts (`ClusterScope.Sandbox.Group`) run under
  no supervisor (see `start/3`); the tombstones of destroyed
  sandboxes are kept by `ClusterScope.Sandbox.Manager`.
  """

  alias ClusterScope.Sandbox.{Group, Manager}

  @doc """
  Makes this node run its share of `placement` at `epoch`: starts the part
  when it is missing (refused when the sandbox was destroyed, or past
  `sandbox_max_per_node`), else applies the placement to it. O(processes
  placed here).
  """
  @spec apply(map(), tuple(), Group.epoch()) :: {:ok, map()} | {:error, String.t()}
  def apply(definition, placement, epoch) do
    case group(definition.id) do
      nil ->
        # No part is made for a node the placement gives nothing.
        if count_here(placement) == 0,
          do: {:ok, %{started: 0, stopped: 0, epoch: Group.counter(epoch)}},
          else: start(definition, placement, epoch)

      pid ->
        call(fn -> Group.apply_placement(pid, placement, epoch) end)
    end
  end

  defp start(definition, placement, epoch) do
    max = ClusterScope.Config.get(:sandbox_max_per_node)

    cond do
      Manager.tombstoned?(definition.id) ->
        {:error, "sandbox #{definition.name} was destroyed (tombstone on #{node()})"}

      length(groups()) >= max ->
        {:error,
         "sandbox_max_per_node: #{node()} already runs #{max} sandboxes " <>
           "(config :cluster_scope, sandbox_max_per_node)"}

      true ->
        # Linked to no supervisor: a crash of ClusterScope's processes around
        # it ends no sandbox; it stops with ClusterScope here (it monitors
        # ClusterScope.Supervisor) or when destroyed.
        case GenServer.start(Group, {definition, placement, epoch}) do
          {:ok, pid} ->
            case Group.await_started(pid, ClusterScope.Config.get(:sandbox_start_timeout_ms)) do
              :ok ->
                {:ok, %{started: count_here(placement), stopped: 0, epoch: Group.counter(epoch)}}

              {:error, text} ->
                # Killed, not shut down: a part stuck in a child's start
                # would hold the node supervisor for its whole shutdown
                # time. Its children are linked to it and go with it.
                # Awaited, so "nothing of it is left" is true when the
                # caller reads it.
                kill_and_await(pid)
                {:error, text}
            end

          {:error, reason} ->
            {:error, "starting the sandbox on #{node()} failed: #{inspect(reason, limit: 10)}"}
        end
    end
  catch
    :exit, reason -> {:error, "sandbox supervisor on #{node()}: #{inspect(reason, limit: 10)}"}
  end

  defp kill_and_await(pid) do
    ref = Process.monitor(pid)
    Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, ^pid, _} -> :ok
    after
      5_000 -> Process.demonitor(ref, [:flush])
    end
  end

  defp count_here(placement),
    do: placement |> Tuple.to_list() |> Enum.count(&(&1 == node()))

  @doc """
  Stops this node's part of sandbox `id` (if any) and records its
  tombstone, so a part that comes back later (a node cut off now) is
  removed. Returns how many processes stopped.
  """
  @spec destroy(binary(), binary()) :: {:ok, non_neg_integer()}
  def destroy(id, name) do
    Manager.tombstone(id, name)
    {:ok, stop(id)}
  end

  @doc false
  # Stops the local part of `id`; returns how many processes it ran.
  def stop(id) do
    case group(id) do
      nil ->
        0

      pid ->
        n =
          try do
            length(Group.info(pid).processes)
          catch
            :exit, _ -> 0
          end

        stop_group(pid)
        n
    end
  end

  # As a supervisor would: a shutdown with time for the children, then a kill.
  defp stop_group(pid) do
    GenServer.stop(pid, :shutdown, 10_000)
  catch
    :exit, {:timeout, _} -> Process.exit(pid, :kill)
    :exit, _ -> :ok
  end

  @doc "This node's parts: `%{id => summary}` (no per-process detail)."
  @spec list() :: {:ok, [map()]}
  def list do
    parts =
      for pid <- groups(), info = safe(fn -> Group.info(pid) end), info != nil do
        summary(info)
      end

    {:ok, parts}
  end

  @doc "This node's part of `id` with its processes and their status, or nil."
  @spec info(binary()) :: {:ok, map() | nil}
  def info(id) do
    case group(id) do
      nil ->
        {:ok, nil}

      pid ->
        case safe(fn -> Group.info(pid) end) do
          nil ->
            {:ok, nil}

          info ->
            procs =
              Enum.map(info.processes, fn p ->
                %{
                  p
                  | pid: p.pid && ClusterScope.ProcessRef.to_string(p.pid),
                    module: inspect(p.module)
                }
              end)

            {:ok, Map.put(summary(info), :processes, procs)}
        end
    end
  end

  @doc """
  The pids of sandbox `id`'s processes running on this node (`[]` when the
  node has no part of it): what the process views read for a `sandbox`
  filter. O(processes here).
  """
  @spec local_pids(binary()) :: [pid()]
  def local_pids(id) do
    with pid when is_pid(pid) <- group(id),
         %{processes: processes} <- safe(fn -> Group.info(pid) end) do
      for %{pid: p} <- processes, is_pid(p), do: p
    else
      _ -> []
    end
  end

  @doc "Definition, placement and epoch of this node's part of `id`, or nil."
  @spec meta(binary()) :: map() | nil
  def meta(id) do
    case group(id) do
      nil -> nil
      pid -> safe(fn -> Group.meta(pid) end)
    end
  end

  @doc """
  What a node that comes back asks of this one: its tombstones and the
  epoch and placement of each of its parts.
  """
  @spec sync_view() :: map()
  def sync_view do
    parts =
      for pid <- groups(), m = safe(fn -> Group.meta(pid) end), m != nil, into: %{} do
        {m.definition.id, m}
      end

    %{tombstones: Manager.tombstones(), parts: parts}
  end

  @doc """
  The pids of this node's live parts, from `:pg`'s local tables (never a
  call to the node supervisor, which waits while a part stops its
  children); a part that has just died is left out before `:pg` notices.
  """
  @spec groups() :: [pid()]
  def groups do
    scope = Group.scope()

    for {:sandbox, _} = g <- :pg.which_groups(scope),
        pid <- :pg.get_local_members(scope, g),
        Process.alive?(pid),
        do: pid
  catch
    _, _ -> []
  end

  @doc "This node's part of sandbox `id`, or nil."
  @spec group(binary()) :: pid() | nil
  def group(id) do
    Enum.find(:pg.get_local_members(Group.scope(), {:sandbox, id}), &Process.alive?/1)
  catch
    _, _ -> nil
  end

  defp summary(info) do
    d = info.definition

    %{
      id: d.id,
      name: d.name,
      strategy: d.strategy,
      restart: d.restart,
      total: d.total,
      epoch: Group.counter(info.epoch),
      epoch_key: info.epoch,
      created_at_ms: d.created_at_ms,
      node: node(),
      placed_here: count_here(info.placement),
      running: Enum.count(info.processes, &(&1.status not in [:failed, :exited])),
      failed: Enum.count(info.processes, &(&1.status == :failed))
    }
  end

  defp call(fun) do
    fun.()
  catch
    :exit, reason -> {:error, "sandbox part on #{node()}: #{inspect(reason, limit: 10)}"}
  end

  defp safe(fun) do
    fun.()
  catch
    :exit, _ -> nil
  end
end
