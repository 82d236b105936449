defmodule ClusterScope.Agent.Processes.Rows do
  @moduledoc """
  Reads processes into compact rows, on the node where they live.

  This module calls only OTP (`erlang`, `lists`, `maps`, `string`,
  `proplists`, `io_lib`, `unicode`, `application`, `application_controller`,
  `sys`, `gen_server`): no Elixir standard library and no other
  ClusterScope module but `ClusterScope.Redact`, itself OTP-only. That is what lets a caller load its object code onto
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

  # What a row needs besides what `cached_rows/4` keeps per pid.
  @light_items [
    :memory,
    :reductions,
    :message_queue_len,
    :heap_size,
    :stack_size,
    :total_heap_size,
    :status,
    :current_function,
    :registered_name
  ]

  # A full row: those, plus what stays the same for a live process.
  @items @light_items ++ [:initial_call, :group_leader, :dictionary]

  @max_state_bytes 1_048_576
  # What a state too large to copy is cut to before it is redacted and
  # printed: at most this many terms, visited depth first.
  @preview_terms 20_000

  # The runtime's servers no request may ever kill or message, with or
  # without force: the node (or its distribution, code loading or
  # applications) would not survive it.
  @vital_names [
    :init,
    :auth,
    :net_kernel,
    :global_name_server,
    :code_server,
    :application_controller
  ]

  # The applications that make up the runtime (OTP's core and Elixir's).
  @runtime_apps [:kernel, :stdlib, :sasl, :compiler, :elixir, :logger]
  # Their server code: a process running one of these modules' servers
  # (`peer`, `pg`, `global`, `logger_olp`, ...) is the runtime's, whoever
  # started it.
  @core_apps [:kernel, :stdlib]

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

  @doc """
  A message queue length as the core takes it. A CI run once read a value
  the core refused for one process of a node (and with it the node's whole
  batch): what the VM reports for a process in the middle of its signal
  handling is not trusted to be a non-negative integer.
  """
  @spec count(term()) :: non_neg_integer()
  def count(n) when is_integer(n) and n >= 0, do: n
  def count(_), do: 0

  @doc "One row, or `nil` when the process is gone."
  @spec row(pid(), :pid | :integer, context()) :: {row() | nil, context()}
  def row(pid, kind, ctx) do
    case full(pid, ctx) do
      {nil, ctx} -> {nil, ctx}
      {row, _stable, ctx} -> {row_with_key(row, pid, kind), ctx}
    end
  end

  # The row (key: the pid), what of it does not change while the process
  # lives ({initial_call, application, type rule}) and the dictionary's
  # length.
  defp full(pid, ctx) do
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
        {rule, ctx} = type_rule(dict, ctx)
        initial = initial_call(dict, real_initial)
        app = :maps.get(gl, :maps.get(:masters, ctx), :undefined)

        {{pid, memory, reductions, count(mql), heap, stack, total_heap, status, current, name,
          initial, app, resolve_type(rule, current)}, {{initial, app, rule}, length(dict)}, ctx}

      :undefined ->
        {nil, ctx}
    end
  end

  defp row_with_key(row, _pid, :pid), do: row
  defp row_with_key(row, pid, :integer), do: :erlang.setelement(1, row, pid_key(pid))

  # A process is cached when its dictionary has at least this many
  # entries: below it, reading the dictionary costs no more than a lookup
  # would save (the signal every read of memory takes dominates).
  @cache_dict_entries 32

  @doc """
  `rows/3` (pid keys) with `table`, an ETS set, as a cache of what does
  not change while a process lives: its initial call, its application
  (from its group leader) and what decides its type (`$initial_call`,
  `$callers`). Only processes whose dictionary has at least
  #{@cache_dict_entries} entries are cached (while the table holds fewer
  than `max`): a known one is read with #{length(@light_items)} items
  instead of #{length(@items)}, its dictionary never copied again, so a
  process with a huge dictionary costs its size once rather than at every
  collection. Other processes are read whole: for them a lookup per
  process costs what it saves (measured). The table is read once per
  context (it is small), so a process costs one map lookup here. Entries
  of dead processes are dropped by `sweep_cache/1`. The rows are the same
  as `rows/3`'s.
  """
  @spec cached_rows([pid()], context(), :ets.tid() | atom(), pos_integer()) ::
          {[row()], context()}
  def cached_rows(pids, ctx, table, max) do
    known =
      case ctx do
        %{known: known} -> known
        _ -> :maps.from_list(:ets.tab2list(table))
      end

    cached_rows(pids, known, ctx, table, max, [])
  end

  defp cached_rows([], known, ctx, _table, _max, acc),
    do: {:lists.reverse(acc), :maps.put(:known, known, ctx)}

  defp cached_rows([pid | rest], known, ctx, table, max, acc) do
    case known do
      %{^pid => {initial, app, rule}} ->
        case :erlang.process_info(pid, @light_items) do
          [
            {:memory, memory},
            {:reductions, reductions},
            {:message_queue_len, mql},
            {:heap_size, heap},
            {:stack_size, stack},
            {:total_heap_size, total_heap},
            {:status, status},
            {:current_function, current},
            {:registered_name, name}
          ] ->
            row =
              {pid, memory, reductions, count(mql), heap, stack, total_heap, status, current,
               name, initial, app, resolve_type(rule, current)}

            cached_rows(rest, known, ctx, table, max, [row | acc])

          :undefined ->
            :ets.delete(table, pid)
            cached_rows(rest, :maps.remove(pid, known), ctx, table, max, acc)
        end

      _ ->
        case full(pid, ctx) do
          {nil, ctx} ->
            cached_rows(rest, known, ctx, table, max, acc)

          {row, {value, dict_entries}, ctx} when dict_entries >= @cache_dict_entries ->
            known =
              if :ets.info(table, :size) < max do
                :ets.insert(table, {pid, value})
                :maps.put(pid, value, known)
              else
                known
              end

            cached_rows(rest, known, ctx, table, max, [row | acc])

          {row, _, ctx} ->
            cached_rows(rest, known, ctx, table, max, [row | acc])
        end
    end
  end

  @doc """
  Drops the entries of dead processes from a `cached_rows/4` table, 1,000
  at a time. Returns how many it dropped. Cost: one `is_process_alive/1`
  per entry.
  """
  @spec sweep_cache(:ets.tid() | atom()) :: non_neg_integer()
  def sweep_cache(table) do
    sweep(:ets.select(table, [{{:"$1", :_}, [{:is_pid, :"$1"}], [:"$1"]}], 1_000), table, 0)
  end

  defp sweep(:"$end_of_table", _table, dropped), do: dropped

  defp sweep({pids, cont}, table, dropped) do
    dead = :lists.filter(fn pid -> not :erlang.is_process_alive(pid) end, pids)
    :lists.foreach(fn pid -> :ets.delete(table, pid) end, dead)
    sweep(:ets.select(cont), table, dropped + length(dead))
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

  defp initial_call(dict, real) do
    case :lists.keyfind(:"$initial_call", 1, dict) do
      {_, {_, _, _} = mfa} -> mfa
      _ -> real
    end
  end

  @doc false
  # The process type; `ctx` caches each module's behaviours.
  def type(dict, current, ctx) do
    {rule, ctx} = type_rule(dict, ctx)
    {resolve_type(rule, current), ctx}
  end

  # What decides the type, from what does not change while the process
  # lives (its `$initial_call` and whether it has `$callers`, both set when
  # it starts): a type, or `{default, callers?}` when the current function
  # decides (a process entering a gen_server loop, a task).
  defp type_rule(dict, ctx) do
    callers? = :lists.keymember(:"$callers", 1, dict)

    case :lists.keyfind(:"$initial_call", 1, dict) do
      {_, {:supervisor, _, _}} ->
        {:supervisor, ctx}

      {_, {mod, :init, 1}} ->
        case behaviour_type(mod, ctx) do
          {:none, ctx} -> {{:proc_lib, callers?}, ctx}
          {type, ctx} -> {type, ctx}
        end

      # Not a behaviour's init: an Elixir task ($callers) or a proc_lib process.
      {_, _} ->
        {{:proc_lib, callers?}, ctx}

      false ->
        {{:plain, callers?}, ctx}
    end
  end

  defp resolve_type(type, _current) when is_atom(type), do: type

  defp resolve_type({default, callers?}, current) do
    case current do
      {:gen_server, _, _} -> :gen_server
      {:gen_statem, _, _} -> :gen_statem
      {:gen_event, _, _} -> :gen_event
      {:"Elixir.Task.Supervised", _, _} -> :task
      _ -> if callers?, do: :task, else: default
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
  holds the node's pid list and one chunk. The stream's own process is
  not in its rows (it holds the pid list: it would rank first by memory).
  """
  @spec stream_v1(pid(), reference(), pos_integer()) :: :ok
  def stream_v1(caller, ref, chunk) when is_pid(caller) and is_integer(chunk) and chunk > 0 do
    monitor = :erlang.monitor(:process, caller)
    stream(:lists.delete(self(), :erlang.processes()), caller, ref, chunk, monitor, context(), 0)
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
  def info_v1(pid, state_timeout), do: info(pid, state_timeout, nil)

  defp info(pid, state_timeout, rules) do
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
              state: state(pid, type, state_timeout, rules)
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

  defp state(_pid, _type, 0, _rules), do: :not_requested

  defp state(pid, type, timeout, rules)
       when type in [:gen_server, :gen_statem, :gen_event, :supervisor] do
    try do
      state = :sys.get_state(pid, timeout)
      # external_size counts binaries, which flat_size does not see.
      bytes = :erlang.external_size(state)

      # A huge state is printed here, depth-limited, rather than copied
      # whole across the network; with rules, from a bounded preview that
      # was redacted first.
      if bytes <= @max_state_bytes do
        {:ok, redact(state, rules)}
      else
        {:state_too_large, bytes, too_large_text(state, rules)}
      end
    catch
      :exit, {:timeout, _} -> {:state_error, :timeout}
      :exit, {reason, _} -> {:state_error, redact(reason, rules)}
      kind, reason -> {:state_error, redact({kind, reason}, rules)}
    end
  end

  defp state(_pid, _type, _timeout, _rules), do: :not_a_behaviour

  # A term too large to copy, printed depth-limited; with rules, from a
  # bounded preview that was redacted first.
  defp too_large_text(term, rules) do
    preview =
      case rules do
        nil -> term
        _ -> redact(:erlang.element(1, preview(term, @preview_terms)), rules)
      end

    :unicode.characters_to_binary(:io_lib.format(~c"~P", [preview, 40]))
  end

  defp redact(term, nil), do: term
  defp redact(term, rules), do: :"Elixir.ClusterScope.Redact".term(term, rules)

  # The term cut to at most `budget` terms, depth first: what is left out
  # becomes the atom '...'. Binaries and printable lists are kept whole
  # (or dropped whole when they do not fit), so redaction sees every
  # secret in full. Returns {preview, budget_left}.
  defp preview(_term, budget) when budget <= 0, do: {:..., 0}

  defp preview(term, budget) when is_binary(term), do: {term, budget - 1}

  defp preview(term, budget) when is_list(term) do
    case bounded_length(term, budget, 0) do
      # A list that fits: whole when it is text, else element by element.
      n when n <= budget ->
        if :io_lib.printable_unicode_list(term),
          do: {term, budget - n},
          else: preview_list(term, budget - 1, [])

      # Too long: a text is dropped whole, never cut inside a secret.
      _ ->
        if chars_only(term, budget),
          do: {:..., 0},
          else: preview_list(term, budget - 1, [])
    end
  end

  defp preview(term, budget) when is_tuple(term) do
    {items, left} = preview_list(:erlang.tuple_to_list(term), budget - 1, [])
    {:erlang.list_to_tuple(items), left}
  end

  defp preview(term, budget) when is_map(term) do
    preview_map(:maps.next(:maps.iterator(term)), budget - 1, [])
  end

  defp preview(term, budget), do: {term, budget - 1}

  defp preview_list([], budget, acc), do: {:lists.reverse(acc), budget}
  defp preview_list(_rest, budget, acc) when budget <= 0, do: {:lists.reverse(acc, [:...]), 0}

  defp preview_list([head | tail], budget, acc) do
    {item, left} = preview(head, budget)
    preview_list(tail, left, [item | acc])
  end

  # An improper tail: kept as the last element.
  defp preview_list(tail, budget, acc) do
    {item, left} = preview(tail, budget)
    {:lists.reverse(acc, [item]), left}
  end

  defp preview_map(:none, budget, acc), do: {:maps.from_list(acc), budget}

  defp preview_map(_iter, budget, acc) when budget <= 0,
    do: {:maps.from_list([{:..., :...} | acc]), 0}

  defp preview_map({key, value, iter}, budget, acc) do
    {key, left} = preview(key, budget)
    {value, left} = preview(value, left)
    preview_map(:maps.next(iter), left, [{key, value} | acc])
  end

  # The length of a proper list, counting no further than `limit` + 1.
  defp bounded_length([], _limit, n), do: n
  defp bounded_length(_list, limit, n) when n > limit, do: n
  defp bounded_length([_ | tail], limit, n), do: bounded_length(tail, limit, n + 1)
  defp bounded_length(_improper, _limit, n), do: n + 1

  # Whether the first `limit` elements are all character codes.
  defp chars_only(_list, 0), do: true
  defp chars_only([c | tail], n) when is_integer(c) and c >= 0, do: chars_only(tail, n - 1)
  defp chars_only([], _n), do: true
  defp chars_only(_list, _n), do: false

  @doc """
  `info_v1/2` for a caller that shows the answer elsewhere: the state (and
  a state error's reason, and the text of a state too large to copy) is
  redacted here, on the process's node, before it leaves, with
  `ClusterScope.Redact` rules built here from this node's cookies plus the
  caller's `keys` (its `redact_keys`) and `secrets` (its tokens). A state
  over 1 MiB is cut to its first #{@preview_terms} terms, then redacted,
  then printed: secrets are never cut in half, since binaries and
  printable lists are kept whole or dropped whole. The answer also carries
  `protection` (`protection_v1/1`).
  """
  @spec info_v2(pid(), non_neg_integer(), [binary()], [binary()]) :: map() | :undefined
  def info_v2(pid, state_timeout, keys, secrets) do
    case info(pid, state_timeout, :"Elixir.ClusterScope.Redact".rules(keys, secrets)) do
      :undefined ->
        :undefined

      info ->
        case protection_v1(pid) do
          :undefined -> :undefined
          protection -> :maps.put(:protection, protection, info)
        end
    end
  end

  @doc """
  `gen_server:call(pid, message, timeout)` made here, on the process's
  node, for a caller elsewhere: the reply (or the exit reason) is redacted
  here like `info_v2/4`'s state before it leaves, and a reply over 1 MiB
  is printed here from a redacted preview instead of copied. Returns
  `{:reply, reply, call_us}`, `{:reply_too_large, bytes, text, call_us}`,
  `{:timeout, timeout}` or `{:exit, reason}`.
  """
  @spec call_v1(pid(), term(), pos_integer(), [binary()], [binary()]) ::
          {:reply, term(), non_neg_integer()}
          | {:reply_too_large, non_neg_integer(), binary(), non_neg_integer()}
          | {:timeout, pos_integer()}
          | {:exit, term()}
  def call_v1(pid, message, timeout, keys, secrets) do
    rules = :"Elixir.ClusterScope.Redact".rules(keys, secrets)
    started = :erlang.monotonic_time(:microsecond)

    try do
      reply = :gen_server.call(pid, message, timeout)
      call_us = :erlang.monotonic_time(:microsecond) - started
      bytes = :erlang.external_size(reply)

      if bytes <= @max_state_bytes do
        {:reply, redact(reply, rules), call_us}
      else
        {:reply_too_large, bytes, too_large_text(reply, rules), call_us}
      end
    catch
      :exit, {:timeout, _} -> {:timeout, timeout}
      :exit, {reason, _} -> {:exit, redact(reason, rules)}
      :exit, reason -> {:exit, redact(reason, rules)}
    end
  end

  @doc """
  Whether a request may kill or message `pid`, decided on its node from
  what the process is, not from a list of names. Returns `:undefined` for
  a dead process, else `%{registered_name:, level:, reason:}` where
  `level` is

    * `:vital` - never, whatever the caller's settings: `init`, `auth`,
      `net_kernel`, `global_name_server`, `code_server`,
      `application_controller` (each checked as the process registered
      under that name right now), every process `init` started itself
      (ERTS's own processes, the boot process) and every process whose
      group leader is `init` (boot-time servers such as `erl_prim_loader`
      and `logger`);
    * `:system` - only with `force` where dangerous actions are allowed: a
      process at `max` priority; one of the runtime's applications
      (#{inspect(@runtime_apps)}, from the group leader) or of ClusterScope;
      an application master, or the top supervisor of an application (its
      parent is the master's child); a process running the code of a
      server of OTP's core (a gen_server or gen_statem whose callback
      module is of `kernel`, `stdlib` or preloaded: `peer` controllers,
      `pg` scopes, ...), and the agentless row stream of this module;
    * `:none` - any other process.

  `reason` says why in a sentence (`nil` for `:none`). Cost: one
  `process_info/2` (which copies the dictionary), one of the parent, and
  a lookup of the applications.
  """
  @spec protection_v1(pid()) ::
          :undefined | %{registered_name: atom() | [], level: atom(), reason: binary() | nil}
  def protection_v1(pid) do
    items = [:registered_name, :initial_call, :group_leader, :priority, :dictionary]

    case :erlang.process_info(pid, items) do
      :undefined ->
        :undefined

      [{_, name}, {_, initial}, {_, gl}, {_, priority}, {_, dict}] ->
        ic = initial_call(dict, initial)
        parent = parent(pid, dict)
        {level, reason} = protection(pid, name, initial, ic, gl, priority, parent)
        %{registered_name: name, level: level, reason: reason}
    end
  end

  defp protection(pid, name, initial, ic, gl, priority, parent) do
    init = :erlang.whereis(:init)

    case vital_name(pid) do
      nil ->
        cond do
          pid == init or parent == init ->
            {:vital, "it is one of the runtime's own processes, started by init"}

          # Boot-time servers started before any application (the boot
          # loader, logger's server): their group leader is init itself.
          gl == init ->
            {:vital, "it is one of the runtime's boot-time processes (its group leader is init)"}

          true ->
            system(pid, name, initial, ic, gl, priority, parent)
        end

      vital ->
        {:vital, atom_text(vital) <> " is vital to the runtime"}
    end
  end

  defp system(pid, _name, initial, ic, gl, priority, parent) do
    app = application_of(gl)

    cond do
      priority == :max ->
        {:system, "it runs at max priority, as the runtime's own processes do"}

      app == :cluster_scope or ic_module(initial) == __MODULE__ ->
        {:system, "it is one of ClusterScope's own processes"}

      :lists.member(app, @runtime_apps) ->
        {:system, "it belongs to the " <> atom_text(app) <> " application, part of the runtime"}

      gl == pid or ic == {:application_master, :init, 4} or
          initial == {:application_master, :start_it, 4} ->
        {:system, "it is the application master of " <> app_text(app)}

      top_supervisor?(parent) ->
        {:system, "it is the top supervisor of " <> app_text(app)}

      core_server?(ic) ->
        {:system, "it runs " <> mfa_text(ic) <> ", a server of the runtime's own code"}

      true ->
        {:none, nil}
    end
  end

  defp vital_name(pid) do
    case :lists.filter(fn n -> :erlang.whereis(n) == pid end, @vital_names) do
      [name | _] -> name
      [] -> nil
    end
  end

  defp parent(pid, dict) do
    case :erlang.process_info(pid, :parent) do
      {:parent, parent} when is_pid(parent) -> parent
      _ -> :undefined
    end
  catch
    # Before OTP 25 there is no `parent` item: the first ancestor.
    :error, :badarg ->
      case :proplists.get_value(:"$ancestors", dict, []) do
        [first | _] when is_pid(first) -> first
        [first | _] when is_atom(first) -> :erlang.whereis(first)
        _ -> :undefined
      end
  end

  defp application_of(gl) do
    :lists.foldl(
      fn {app, _, _}, acc ->
        case acc do
          :undefined ->
            if :application_controller.get_master(app) == gl, do: app, else: :undefined

          found ->
            found
        end
      end,
      :undefined,
      # ETS reads only: never waits on a busy application_controller.
      :application.loaded_applications()
    )
  catch
    _, _ -> :undefined
  end

  # The parent of an application's top supervisor is the process the
  # application master starts to run the application's start/2. A parent
  # on another node (a process spawned from there) is never one, and
  # process_info/2 of a remote pid raises badarg.
  defp top_supervisor?(parent) when is_pid(parent) and node(parent) == node() do
    :erlang.process_info(parent, :initial_call) ==
      {:initial_call, {:application_master, :start_it, 4}}
  end

  defp top_supervisor?(_), do: false

  # A gen_server or gen_statem whose callback module is OTP's core code
  # (proc_lib's `$initial_call` is then `{Mod, init, 1}`). Other initial
  # calls say what function a process started in (a Task or an Agent of
  # `:lists.duplicate/2` is the user's), not whose server it is.
  defp core_server?({mod, :init, 1}) when is_atom(mod) do
    :lists.member(mod, :erlang.pre_loaded()) or :lists.member(module_app(mod), @core_apps)
  end

  defp core_server?(_), do: false

  defp module_app(mod) do
    case :application.get_application(mod) do
      {:ok, app} -> app
      :undefined -> :undefined
    end
  end

  defp ic_module({mod, _, _}), do: mod
  defp ic_module(_), do: nil

  defp atom_text(atom), do: :erlang.atom_to_binary(atom, :utf8)

  defp app_text(:undefined), do: "an application"
  defp app_text(app), do: "the " <> atom_text(app) <> " application"

  defp mfa_text({m, f, a}),
    do: atom_text(m) <> ":" <> atom_text(f) <> "/" <> :erlang.integer_to_binary(a)
end
