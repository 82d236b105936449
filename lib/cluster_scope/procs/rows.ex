defmodule ClusterScope.Procs.Rows do
  @moduledoc """
  Reads processes into compact rows, on the node where they live.

  This module calls only OTP (`erlang`, `lists`, `maps`, `string`,
  `application_controller`, `sys`): no Elixir standard library and no other
  ClusterScope module. That is what lets a caller load its object code onto
  a node that runs no ClusterScope at all (`:code.load_binary/3`, as Phoenix
  LiveDashboard does) and collect there: the *agentless* path. Agent nodes
  use the same functions, so a process is described the same way whichever
  path read it. Its public functions are versioned (`stream_v1/3`,
  `info_v1/2`): a later ClusterScope adds `_v2` functions beside them rather
  than changing these.

  ## What a row costs

  One `process_info/2` call per process, which copies the process's
  dictionary (OTP 25 has no way to read one key of another process's
  dictionary): a process with a huge dictionary costs that much to read,
  as it does for observer. The process is never suspended, its state never
  read. Dead processes are skipped.

  A row is the tuple `ClusterScope.Native.procs_snapshot_push/2` takes:

      {key, memory, reductions, message_queue_len, heap_size, stack_size,
       total_heap_size, status, current_function, registered_name,
       initial_call, application, type}

  `initial_call` is the real one, as observer shows it: proc_lib's
  `$initial_call` from the dictionary when there is one. `application` is
  the application whose master is the process's group leader (what
  `application:get_application/1` answers), read from one map built per
  collection instead of one ETS lookup per process. `type` is one of
  `:supervisor`, `:gen_server`, `:gen_statem`, `:gen_event`, `:task`,
  `:proc_lib`, `:plain`, from the initial call's module behaviours
  (cached per module), the current function and the `$callers` key Elixir
  tasks set.
  """

  @items [
    :memory,
    :reductions,
    :message_queue_len,
    :heap_size,
    :stack_size,
    :total_heap_size,
    :status,
    :current_function,
    :registered_name,
    :initial_call,
    :group_leader,
    :dictionary
  ]

  @max_state_bytes 1_048_576

  @typedoc "What a collection carries from row to row."
  @type context :: %{masters: %{pid() => atom()}, behaviours: %{module() => atom()}}

  @typedoc "A process row (see the module doc)."
  @type row :: tuple()

  @doc "A fresh context: the application masters of this node."
  @spec context() :: context()
  def context do
    masters =
      :lists.foldl(
        fn {app, _, _}, acc ->
          case :application_controller.get_master(app) do
            pid when is_pid(pid) -> :maps.put(pid, app, acc)
            _ -> acc
          end
        end,
        %{},
        :application.which_applications(5_000)
      )

    %{masters: masters, behaviours: %{}}
  end

  @doc """
  Rows for `pids` (dead ones skipped). `key_fun` turns a pid into the row's
  key: `:pid` keeps the pid, `:integer` encodes it as `id * 2^32 + serial`
  (for rows that leave the node).
  """
  @spec rows([pid()], :pid | :integer, context()) :: {[row()], context()}
  def rows(pids, key_kind, ctx), do: rows(pids, key_kind, ctx, [])

  defp rows([], _kind, ctx, acc), do: {:lists.reverse(acc), ctx}

  defp rows([pid | rest], kind, ctx, acc) do
    case row(pid, kind, ctx) do
      {nil, ctx} -> rows(rest, kind, ctx, acc)
      {row, ctx} -> rows(rest, kind, ctx, [row | acc])
    end
  end

  @doc "One row, or `nil` when the process is gone."
  @spec row(pid(), :pid | :integer, context()) :: {row() | nil, context()}
  def row(pid, kind, ctx) do
    case :erlang.process_info(pid, @items) do
      [
        {:memory, memory},
        {:reductions, reductions},
        {:message_queue_len, mql},
        {:heap_size, heap},
        {:stack_size, stack},
        {:total_heap_size, total_heap},
        {:status, status},
        {:current_function, current},
        {:registered_name, name},
        {:initial_call, real_initial},
        {:group_leader, gl},
        {:dictionary, dict}
      ] ->
        {type, ctx} = type(dict, current, ctx)
        initial = initial_call(dict, real_initial)
        app = :maps.get(gl, :maps.get(:masters, ctx), :undefined)

        {{row_key(pid, kind), memory, reductions, mql, heap, stack, total_heap, status, current,
          name, initial, app, type}, ctx}

      :undefined ->
        {nil, ctx}
    end
  end

  @doc "A pid as the integer `id * 2^32 + serial` (its two numbers on its node)."
  @spec pid_key(pid()) :: non_neg_integer()
  def pid_key(pid) do
    [_, id, serial] = :string.lexemes(:erlang.pid_to_list(pid), ~c"<.>")
    key(:erlang.list_to_integer(id), :erlang.list_to_integer(serial))
  end

  @doc "The integer key of a pid's two numbers (see `pid_key/1`)."
  @spec key(non_neg_integer(), non_neg_integer()) :: non_neg_integer()
  def key(id, serial), do: id * 4_294_967_296 + serial

  @doc "The two numbers of an integer key: `{id, serial}`."
  @spec numbers(non_neg_integer()) :: {non_neg_integer(), non_neg_integer()}
  def numbers(key), do: {div(key, 4_294_967_296), rem(key, 4_294_967_296)}

  defp row_key(pid, :pid), do: pid
  defp row_key(pid, :integer), do: pid_key(pid)

  defp initial_call(dict, real) do
    case :lists.keyfind(:"$initial_call", 1, dict) do
      {_, {_, _, _} = mfa} -> mfa
      _ -> real
    end
  end

  @doc false
  # The process type; `ctx` caches each module's behaviours.
  def type(dict, current, ctx) do
    case :lists.keyfind(:"$initial_call", 1, dict) do
      {_, {:supervisor, _, _}} ->
        {:supervisor, ctx}

      {_, {mod, :init, 1}} ->
        {by_behaviour, ctx} = behaviour_type(mod, ctx)

        case by_behaviour do
          :none -> {fallback_type(dict, current, :proc_lib), ctx}
          type -> {type, ctx}
        end

      # Not a behaviour's init: an Elixir task ($callers) or a proc_lib process.
      {_, _} ->
        {fallback_type(dict, current, :proc_lib), ctx}

      false ->
        {fallback_type(dict, current, :plain), ctx}
    end
  end

  defp fallback_type(dict, current, default) do
    case current do
      {:gen_server, _, _} -> :gen_server
      {:gen_statem, _, _} -> :gen_statem
      {:gen_event, _, _} -> :gen_event
      {:"Elixir.Task.Supervised", _, _} -> :task
      _ -> if :lists.keymember(:"$callers", 1, dict), do: :task, else: default
    end
  end

  defp behaviour_type(mod, %{behaviours: cache} = ctx) do
    case cache do
      %{^mod => type} ->
        {type, ctx}

      _ ->
        type = module_type(mod)
        {type, %{ctx | behaviours: :maps.put(mod, type, cache)}}
    end
  end

  # Only modules already loaded are asked: reading a process never loads code.
  defp module_type(:"Elixir.DynamicSupervisor"), do: :supervisor
  defp module_type(:"Elixir.PartitionSupervisor"), do: :supervisor

  defp module_type(mod) do
    if :erlang.module_loaded(mod) do
      attrs =
        try do
          mod.module_info(:attributes)
        catch
          _, _ -> []
        end

      behaviours =
        :proplists.get_value(:behaviour, attrs, []) ++ :proplists.get_value(:behavior, attrs, [])

      cond do
        has_any(behaviours, [:supervisor, :"Elixir.Supervisor", :"Elixir.DynamicSupervisor"]) ->
          :supervisor

        has_any(behaviours, [:gen_server, :"Elixir.GenServer"]) ->
          :gen_server

        has_any(behaviours, [:gen_statem]) ->
          :gen_statem

        has_any(behaviours, [:gen_event]) ->
          :gen_event

        true ->
          :none
      end
    else
      :none
    end
  end

  defp has_any(list, candidates), do: :lists.any(&:lists.member(&1, list), candidates)

  @doc """
  The agentless stream: walks this node's processes and sends their rows
  (integer keys) to `caller` in chunks of `chunk` rows, as
  `{ref, :rows, rows}`, waiting for `{ref, :ack}` after each one, then sends
  `{ref, :done, count}`. It stops when the caller dies or does not ack
  within 10 s, so an abandoned stream never lingers. Memory: this process
  holds the node's pid list and one chunk.
  """
  @spec stream_v1(pid(), reference(), pos_integer()) :: :ok
  def stream_v1(caller, ref, chunk) when is_pid(caller) and is_integer(chunk) and chunk > 0 do
    monitor = :erlang.monitor(:process, caller)
    stream(:erlang.processes(), caller, ref, chunk, monitor, context(), 0)
  end

  defp stream(pids, caller, ref, chunk, monitor, ctx, count) do
    case take(pids, chunk, []) do
      {[], _} ->
        send(caller, {ref, :done, count})
        :ok

      {batch, rest} ->
        {rows, ctx} = rows(batch, :integer, ctx)
        send(caller, {ref, :rows, rows})

        receive do
          {^ref, :ack} -> stream(rest, caller, ref, chunk, monitor, ctx, count + length(rows))
          {:DOWN, ^monitor, _, _, _} -> :ok
        after
          10_000 -> :ok
        end
    end
  end

  defp take(rest, 0, acc), do: {:lists.reverse(acc), rest}
  defp take([], _n, acc), do: {:lists.reverse(acc), []}
  defp take([pid | rest], n, acc), do: take(rest, n - 1, [pid | acc])

  @doc """
  Everything about one process, for `GetProcessInfo`: its row fields plus
  links and monitors (each with its node), ancestors, trap_exit, priority,
  and with `state_timeout` > 0 its state through `:sys.get_state/2` when it
  is an OTP behaviour (a process that does not answer in time gives
  `{:state_error, :timeout}`; nothing else is affected). Returns
  `:undefined` when the process is not alive.
  """
  @spec info_v1(pid(), non_neg_integer()) :: map() | :undefined
  def info_v1(pid, state_timeout) do
    extra = [:links, :monitors, :monitored_by, :trap_exit, :priority, :group_leader]

    case :erlang.process_info(pid, extra) do
      :undefined ->
        :undefined

      info ->
        case row(pid, :pid, context()) do
          {nil, _} ->
            :undefined

          {row, _} ->
            dict = dictionary(pid)
            type = :erlang.element(13, row)

            %{
              row: row,
              links: :proplists.get_value(:links, info),
              monitors: :proplists.get_value(:monitors, info),
              monitored_by: :proplists.get_value(:monitored_by, info),
              trap_exit: :proplists.get_value(:trap_exit, info),
              priority: :proplists.get_value(:priority, info),
              group_leader: :proplists.get_value(:group_leader, info),
              ancestors: :proplists.get_value(:"$ancestors", dict, []),
              state: state(pid, type, state_timeout)
            }
        end
    end
  end

  defp dictionary(pid) do
    case :erlang.process_info(pid, :dictionary) do
      {:dictionary, dict} -> dict
      :undefined -> []
    end
  end

  defp state(_pid, _type, 0), do: :not_requested

  defp state(pid, type, timeout)
       when type in [:gen_server, :gen_statem, :gen_event, :supervisor] do
    try do
      state = :sys.get_state(pid, timeout)
      # external_size counts binaries, which flat_size does not see.
      bytes = :erlang.external_size(state)

      # A huge state is printed here, depth-limited, rather than copied
      # whole across the network.
      if bytes <= @max_state_bytes do
        {:ok, state}
      else
        text = :io_lib.format(~c"~P", [state, 40])
        {:state_too_large, bytes, :unicode.characters_to_binary(text)}
      end
    catch
      :exit, {:timeout, _} -> {:state_error, :timeout}
      :exit, {reason, _} -> {:state_error, reason}
      kind, reason -> {:state_error, {kind, reason}}
    end
  end

  defp state(_pid, _type, _timeout), do: :not_a_behaviour
end
