defmodule ClusterScope.Trace.Tracer do
  @moduledoc """
  The tracer of one session on one node: it receives the VM's trace
  messages, asks the Rust throttle whether to keep each one, formats only
  the kept ones and stores them in the session's bounded ring.

  ## Why it cannot take the node down

    * **The VM stops producing events when the budget is spent.** When the
      throttle answers `{:pause, until}`, the tracer switches its trace
      pattern (or the process's trace flags) off until the next window,
      instead of receiving and dropping events: an event that is not
      produced costs nothing.
    * **Function patterns are meta trace patterns** (`trace_pattern/3` with
      `{:meta, tracer}`): switching them on and off is O(1), touches no
      process's flags, and does not take processes away from another
      tracer. A process target is a guard (`self() == pid`) in the match
      spec; the tracer itself is always excluded.
    * **Switching is quick; events wait their turn.** Only switching the
      VM's tracing on and off (a few BIF calls and the control-word server,
      which runs at high priority) runs at high priority, so a busy
      scheduler does not make the traced code run on with its breakpoint
      for a time slice per hop; events are handled at normal priority.
    * **Hard stop.** Every 32 messages a running tracer checks its own
      mailbox; past `max_queue` it switches everything off, drops what is
      queued and stops (like redbug's `max_queue`). A paused one only drains
      what the VM produced before it was told to stop (switching a pattern
      off takes effect after a code barrier, a millisecond or so, during
      which a hot function goes on producing).
    * **Bounded everything.** The ring holds at most its capacity and 16 MiB;
      events are formatted under `inspect/2` limits; the session ends at
      `duration_ms` and at `max_events`, and the throttle lowers the rate
      when the measured overhead passes `overhead_ceiling`.
    * **Never outlives its owner or ClusterScope on the creating node**: it
      monitors its owner and the creating node's `ClusterScope.Supervisor`
      (which outlives a crash of the session registry) and switches tracing
      off and exits when either goes away (a partition or the creating
      node's death included). `terminate/2`
      switches tracing off whatever the reason.

  After it stops tracing it stays alive (tracing off) for `retain_ms`
  (10 min) so its events can still be read, then exits.
  """

  use GenServer, restart: :temporary

  @pg_scope :cluster_scope

  require Logger

  alias ClusterScope.{Native, ProcessRef}
  alias ClusterScope.Trace.{Calibration, ControlWord, Event}

  @check_every 32
  # One-second windows: switching a pattern on or off waits for a code
  # barrier (5-10 ms while a scheduler is busy), during which a hot function
  # runs with its breakpoint (about 300 ns a call). Once per second that is
  # about 1% of the traced code's time; ten times per second it would be 10%.
  @window_ms 1_000
  @retain_ms 600_000

  @max_tracers 64

  @doc """
  Starts a tracer on this node (called through `ClusterScope.Fanout` from
  the node that creates the session). Returns `{:ok, pid}` or
  `{:error, reason}` when the target is not here, a conflicting tracer
  exists, the module is not loaded here, or #{64} tracers run here
  (`:max_children`).

  A tracer is linked to no supervisor: a crash of ClusterScope's processes
  around it (a supervisor included) does not end a session. It ends with
  its owner, with ClusterScope on the creating node or on this one (it
  monitors both nodes' `ClusterScope.Supervisor`), at its limits, or when
  stopped.
  """
  @spec start(String.t(), map(), pid(), pid()) :: {:ok, pid()} | {:error, term()}
  def start(id, spec, owner, registry) do
    if length(:pg.get_local_members(@pg_scope, :tracers)) >= @max_tracers do
      {:error, :max_children}
    else
      case GenServer.start(__MODULE__, {id, spec, owner, registry}) do
        {:ok, pid} -> {:ok, pid}
        {:error, {:shutdown, reason}} -> {:error, reason}
        {:error, reason} -> {:error, reason}
        :ignore -> {:error, :ignored}
      end
    end
  catch
    # No :pg scope (ClusterScope stopping here).
    :exit, _ -> {:error, :not_running}
  end

  @doc "Events after `after_seq` (at most `limit`): `{:ok, events, next_seq, missed}`."
  @spec read(pid(), non_neg_integer(), pos_integer()) ::
          {:ok, [map()], non_neg_integer(), non_neg_integer()} | {:error, term()}
  def read(tracer, after_seq, limit), do: GenServer.call(tracer, {:read, after_seq, limit})

  @doc "The session's counters on this node and its state."
  @spec stats(pid()) :: map()
  def stats(tracer), do: GenServer.call(tracer, :stats)

  @doc "Stops tracing (the events stay readable)."
  @spec stop_tracing(pid()) :: :ok
  def stop_tracing(tracer), do: GenServer.call(tracer, :stop_tracing)

  @doc "Forwards every kept event to `to` (or stops forwarding with `nil`)."
  @spec forward(pid(), pid() | nil) :: :ok
  def forward(tracer, to), do: GenServer.cast(tracer, {:forward, to})

  defp monitor_local_clusterscope do
    case Process.whereis(ClusterScope.Supervisor) do
      nil -> nil
      sup -> Process.monitor(sup)
    end
  end

  @impl true
  def init({id, spec, owner, registry}) do
    Process.flag(:trap_exit, true)
    :ok = :pg.join(@pg_scope, :tracers, self())
    # Loaded now, not at the first event: loading code mid-burst would leave
    # the mailbox filling for milliseconds (interactive mode loads lazily).
    Enum.each([Event, Native, ControlWord, :erts_debug], &Code.ensure_loaded/1)

    with {:ok, target} <- resolve_target(spec),
         :ok <- check_protected(target),
         :ok <- check_module(spec),
         :ok <- check_conflicts(spec, target),
         {:ok, bit} <- claim(spec),
         {:ok, throttle} <- throttle(spec) do
      state = %{
        id: id,
        spec: spec,
        target: target,
        throttle: throttle,
        owner: owner,
        owner_ref: Process.monitor(owner),
        registry: registry,
        registry_ref: Process.monitor(registry),
        # ClusterScope on this node: a tracer never outlives it.
        local_ref: monitor_local_clusterscope(),
        status: :running,
        stop_reason: nil,
        forward: nil,
        received: 0,
        late: 0,
        started_at: System.system_time(:millisecond),
        pattern: nil,
        bit: bit,
        held: false,
        peak_queue: 0,
        peak_memory: 0,
        budget: Native.throttle_stats(throttle).budget
      }

      case enable(state) do
        {:ok, state} ->
          Process.send_after(self(), :expire, spec.duration_ms)
          {:ok, state}

        {:error, reason} ->
          # The pattern may be on (the messages failed): this session holds
          # its claim, so switching it off touches no one else's.
          disable(%{state | pattern: spec[:mfa]})
          {:stop, {:shutdown, reason}}
      end
    else
      {:error, reason} -> {:stop, {:shutdown, reason}}
    end
  end

  @impl true
  def handle_info(message, state)
      when is_tuple(message) and elem(message, 0) in [:trace, :trace_ts] do
    state = %{state | received: state.received + 1}

    # While paused, the VM has been told to stop: the backlog is finite and
    # drains at about 100 ns a message, so only a running tracer can overload.
    if state.status == :running and rem(state.received, @check_every) == 0 do
      case queue_check(state) do
        :overload -> {:noreply, stop(state, :overload)}
        state -> {:noreply, handle_trace(message, state)}
      end
    else
      {:noreply, handle_trace(message, state)}
    end
  end

  def handle_info(:resume, %{status: :paused} = state) do
    case enable(state) do
      {:ok, state} -> {:noreply, %{state | status: :running}}
      {:error, reason} -> {:noreply, stop(state, reason)}
    end
  end

  def handle_info(:resume, state), do: {:noreply, state}

  def handle_info(:expire, state) do
    {:noreply, if(state.status == :stopped, do: state, else: stop(state, :duration))}
  end

  def handle_info(:retire, state), do: {:stop, :normal, state}

  def handle_info({:DOWN, ref, :process, _, _}, %{owner_ref: ref} = state) do
    {:stop, :normal, stop(state, :owner_down)}
  end

  def handle_info({:DOWN, ref, :process, _, _}, %{registry_ref: ref} = state) do
    {:stop, :normal, stop(state, :session_node_down)}
  end

  def handle_info({:DOWN, ref, :process, _, _}, %{local_ref: ref} = state) do
    {:stop, :normal, stop(state, :clusterscope_stopped)}
  end

  def handle_info({:EXIT, _, _}, state), do: {:noreply, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call({:read, after_seq, limit}, _from, state) do
    reply =
      case Native.throttle_read(state.throttle, after_seq, limit) do
        {:ok, items, next, missed} ->
          rules = ClusterScope.Secrets.rules()

          events =
            for {seq, _ts, _key, bin} <- items, event = Event.load(bin, rules), event != nil do
              Map.put(event, :seq, seq)
            end

          {:ok, events, next, missed}

        {:error, _} = error ->
          error

        other ->
          {:error, other}
      end

    {:reply, reply, state}
  end

  def handle_call(:stats, _from, state), do: {:reply, stats_of(state), state}

  def handle_call(:stop_tracing, _from, state) do
    state = if state.status == :stopped, do: state, else: stop(state, :stopped)
    {:reply, :ok, state}
  end

  @impl true
  def handle_cast({:forward, to}, state), do: {:noreply, %{state | forward: to}}

  @impl true
  def terminate(_reason, state) do
    disable(state)
    :ok
  end

  # -- events ------------------------------------------------------------------

  defp handle_trace(_message, %{status: :stopped} = state), do: %{state | late: state.late + 1}

  defp handle_trace(message, state) do
    pid = Event.pid(message)
    key = :erlang.phash2(pid)

    case Native.throttle_admit(state.throttle, System.monotonic_time(:millisecond), key) do
      :keep ->
        ts = Event.ts_us(message)
        # An event over 64 KiB is refused by the ring (and counted there as
        # too_large); Event.store/2 keeps real events far below it. A small
        # one is stored raw and redacted when read; a large one is formatted
        # (and redacted with this node's rules) now.
        _ = Native.throttle_push(state.throttle, ts, key, Event.store(message, ts))

        if state.forward do
          event = Event.from_trace(message, ts, rules())
          send(state.forward, {:cluster_scope_trace, state.id, event})
        end

        state

      :drop ->
        state

      {:pause, until_ms} when state.status == :running ->
        disable(state)
        state = %{state | held: false}
        # What the VM produced before it was told to stop still goes through
        # admit (about 100 ns each, no formatting), so the counts and the
        # overhead estimate stay exact.
        wait = max(until_ms - System.monotonic_time(:millisecond), 1)
        Process.send_after(self(), :resume, wait)
        %{state | status: :paused}

      {:pause, _} ->
        state

      :limit ->
        stop(state, :max_events)
    end
  end

  # This node's secrets for events formatted as they come (forwarded to
  # subscribers), read again at most every second. Events are redacted
  # here, on the traced node, where the secrets are known.
  defp rules do
    now = System.monotonic_time(:millisecond)

    case Process.get(:cluster_scope_rules) do
      {at, rules} when now - at < 1_000 ->
        rules

      _ ->
        rules = ClusterScope.Secrets.rules()
        Process.put(:cluster_scope_rules, {now, rules})
        rules
    end
  end

  # Past max_queue: stop. With a control-word bit, hold production as soon
  # as the queue already holds a window's budget (what is queued fills it),
  # and let it go again once the queue has drained.
  defp queue_check(state) do
    [message_queue_len: len, memory: memory] = Process.info(self(), [:message_queue_len, :memory])

    state = %{
      state
      | peak_queue: max(state.peak_queue, len),
        peak_memory: max(state.peak_memory, memory)
    }

    cond do
      len > state.spec.max_queue -> :overload
      state.bit && not state.held && len >= state.budget -> hold(state, true)
      state.held && len < @check_every -> hold(state, false)
      true -> state
    end
  end

  defp hold(state, held?) do
    switching(fn -> ControlWord.put(state.bit, held?) end)
    %{state | held: held?}
  end

  defp stop(state, reason) do
    disable(state)
    # The pattern is off: its claim and bit go back to the node at once (the
    # tracer itself stays, tracing nothing, so its events can be read).
    if state.spec[:mfa], do: safely(fn -> ControlWord.release() end)
    state = %{state | bit: nil, pattern: nil}
    dropped = flush_traces(0)

    Logger.debug("ClusterScope trace #{state.id} stopped on #{node()}: #{reason}")
    # The session registry by name on the creating node: it may have
    # restarted since this tracer started.
    send(
      {ClusterScope.Trace.Sessions, node(state.registry)},
      {:cluster_scope_trace_stopped, state.id, node(), reason}
    )

    Process.send_after(self(), :retire, @retain_ms)
    %{state | status: :stopped, stop_reason: reason, late: state.late + dropped}
  end

  defp flush_traces(n) do
    receive do
      message when is_tuple(message) and elem(message, 0) in [:trace, :trace_ts] ->
        flush_traces(n + 1)
    after
      0 -> n
    end
  end

  defp stats_of(state) do
    stats =
      case Native.throttle_stats(state.throttle) do
        %{} = map -> map
        _ -> %{}
      end

    Map.merge(stats, %{
      node: node(),
      tracer: ProcessRef.to_string(self()),
      status: state.status,
      stop_reason: state.stop_reason,
      received: state.received,
      dropped_unread: state.late,
      peak_queue: state.peak_queue,
      peak_memory_bytes: state.peak_memory,
      started_at_ms: state.started_at,
      event_cost_ns: Calibration.event_cost_ns()
    })
  end

  # -- switching the VM's tracing on and off -----------------------------------

  defp enable(state) do
    switching(fn ->
      with {:ok, state} <- enable_pattern(state), do: enable_messages(state)
    end)
  end

  # Switching runs at high priority, and only switching: a switch is a few
  # BIF calls and two calls to the control-word server (itself at high
  # priority), each O(1), but every hop it waits behind a busy scheduler's
  # other processes is a time slice (about a millisecond) of the traced code
  # producing events past the budget, or running its breakpoint for nothing
  # once the bit is set. Events are always handled at normal priority, so a
  # flood never takes a scheduler from the node's other processes.
  defp switching(fun) do
    old = Process.flag(:priority, :high)

    try do
      fun.()
    after
      Process.flag(:priority, old)
    end
  end

  # The pattern goes on with the session's bit still set (no events during
  # the code barrier); clearing the bit starts the events.
  defp enable_pattern(%{spec: %{mfa: mfa} = spec} = state) do
    ms = guarded_match_spec(spec.match_spec, state.target, state.bit)

    case :erlang.trace_pattern(mfa, ms, [{:meta, self()}]) do
      0 ->
        {:error, {:no_function, "no loaded function matches #{format_mfa(mfa)} on #{node()}"}}

      _ ->
        if state.bit, do: ControlWord.put(state.bit, false)
        {:ok, %{state | pattern: mfa}}
    end
  rescue
    e in ArgumentError -> {:error, {:bad_pattern, Exception.message(e)}}
  end

  defp enable_pattern(state), do: {:ok, state}

  defp enable_messages(%{spec: %{messages: flags}, target: pid} = state) when is_pid(pid) do
    # Another tracer may have taken the process while this one was paused.
    case tracer_of(pid) do
      t when t in [[], self()] ->
        :erlang.trace(pid, true, flags ++ [:timestamp, {:tracer, self()}])
        {:ok, state}

      other ->
        {:error, {:conflict, "#{ProcessRef.to_string(pid)} is now traced by #{inspect(other)}"}}
    end
  rescue
    ArgumentError -> {:error, {:not_found, "the process is not alive"}}
  end

  defp enable_messages(state), do: {:ok, state}

  # The bit first: the events stop at once; the pattern (and its cost per
  # call) goes after the code barrier.
  # Only what this tracer switched on is switched off: after a stop its
  # pattern may belong to another session, its process to another tracer.
  defp disable(state), do: switching(fn -> disable_now(state) end)

  defp disable_now(state) do
    if state[:bit], do: safely(fn -> ControlWord.put(state.bit, true) end)

    if mfa = state[:pattern] do
      safely(fn -> :erlang.trace_pattern(mfa, false, [:meta]) end)
    end

    case state.spec do
      %{messages: flags} when is_pid(state.target) ->
        if tracer_of(state.target) == self(),
          do: safely(fn -> :erlang.trace(state.target, false, [:timestamp | flags]) end)

      _ ->
        :ok
    end
  end

  defp safely(fun) do
    fun.()
  rescue
    _ -> :ok
  catch
    :exit, _ -> :ok
  end

  # The process filter (or the tracer's own exclusion) and the session's
  # control-word bit, in every clause.
  defp guarded_match_spec(ms, target, bit) do
    clauses = if ms == true, do: [{:_, [], []}], else: ms
    me = self()

    guard =
      if is_pid(target),
        do: [{:==, {:self}, target}],
        else: [{:"=/=", {:self}, me}]

    guard = if bit, do: [{:==, {:band, {:get_tcw}, bit}, 0} | guard], else: guard
    Enum.map(clauses, fn {head, guards, body} -> {head, guard ++ guards, body} end)
  end

  defp format_mfa({m, f, a}), do: "#{inspect(m)}.#{f}/#{a}"

  # -- setup checks -------------------------------------------------------------

  defp resolve_target(%{process: %ProcessRef{} = ref}) do
    with {:ok, pid} <- ProcessRef.to_local_pid(ref),
         true <- Process.alive?(pid) do
      {:ok, pid}
    else
      _ -> {:error, {:not_found, "no process #{ref} on #{node()}"}}
    end
  end

  defp resolve_target(%{name: name}) do
    case Process.whereis(name) do
      nil -> {:error, {:not_found, "no process registered as #{inspect(name)} on #{node()}"}}
      pid -> {:ok, pid}
    end
  end

  defp resolve_target(_spec), do: {:ok, nil}

  # A pid target is checked here, where its name and initial call are known.
  defp check_protected(pid) when is_pid(pid) do
    if ClusterScope.Trace.Spec.protected_process?(pid),
      do:
        {:error,
         {:protected,
          "#{ProcessRef.to_string(pid)} holds the node's secrets or is part of ClusterScope: never traced, even with force: true"}},
      else: :ok
  end

  defp check_protected(_), do: :ok

  # A module of the node's code path that was not called yet is loaded (it
  # would be at its first call anyway); one that is not there is an error.
  defp check_module(%{mfa: {mod, _, _}}) do
    case :code.ensure_loaded(mod) do
      {:module, ^mod} -> :ok
      {:error, _} -> {:error, {:not_loaded, "#{inspect(mod)} is not available on #{node()}"}}
    end
  end

  defp check_module(_), do: :ok

  defp check_conflicts(spec, target) do
    cond do
      is_pid(target) and spec[:messages] && tracer_of(target) not in [[], self()] ->
        {:error,
         {:conflict,
          "#{ProcessRef.to_string(target)} is already traced by #{inspect(tracer_of(target))}"}}

      match?(%{mfa: {_, f, a}} when f != :_ and a != :_, spec) and meta_tracer(spec.mfa) != false ->
        {:error,
         {:conflict,
          "#{format_mfa(spec.mfa)} already has a meta tracer on #{node()}: #{inspect(meta_tracer(spec.mfa))}"}}

      true ->
        :ok
    end
  end

  defp claim(%{mfa: mfa}), do: ControlWord.acquire(mfa)
  defp claim(_spec), do: {:ok, nil}

  defp tracer_of(pid) do
    case :erlang.trace_info(pid, :tracer) do
      {:tracer, tracer} -> tracer
      _ -> []
    end
  end

  defp meta_tracer(mfa) do
    case :erlang.trace_info(mfa, :meta) do
      {:meta, false} -> false
      {:meta, tracer} -> tracer
      _ -> false
    end
  end

  defp throttle(spec) do
    opts =
      %{
        rate: spec.rate,
        window_ms: @window_ms,
        max_events: spec.max_events,
        ring_capacity: min(spec.max_events, 100_000),
        overhead_ceiling: spec.overhead_ceiling * 1.0,
        event_cost_ns: Calibration.event_cost_ns()
      }
      |> then(fn o ->
        if spec[:per_process_rate], do: Map.put(o, :per_key_rate, spec.per_process_rate), else: o
      end)

    case Native.throttle_new(opts) do
      {:ok, ref} -> {:ok, ref}
      {:error, reason} -> {:error, {:bad_limits, inspect(reason)}}
    end
  end
end
