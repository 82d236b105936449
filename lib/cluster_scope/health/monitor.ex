defmodule ClusterScope.Health.Monitor do
  @moduledoc """
  Samples this node's health every `health_interval_ms` (default 1 s),
  raises and clears alerts against thresholds, keeps baselines, and protects
  the node from its own cost. One per node, started in ClusterScope's
  supervision tree. Use it through `ClusterScope.Health`.

  ## A sample

    * memory: total, processes, binary, ets, atom (`:erlang.memory/1`), and
      the total as a % of the memory available to the VM (machine or cgroup)
    * process, port and atom counts against their limits
    * run queue lengths: per normal scheduler, dirty CPU and dirty IO
    * scheduler utilisation of the normal (and dirty CPU) schedulers
    * reductions per second (`:erlang.statistics(:reductions)`, deltas of
      the total, so other callers of `statistics(:reductions)` do not
      disturb it)
    * the 10 longest message queues (a non-essential collector, see below)
    * busy distribution port events: how many times a process was suspended
      because a distribution buffer was full, counted from
      `:erlang.system_monitor/2` messages - only when no other system
      monitor is installed: there is one per VM, so the monitor installs
      itself only when `:erlang.system_monitor()` is `:undefined`, never
      replaces another one, gives it back if one appeared in the meantime,
      and stops counting (status `unavailable`) if another process takes the
      slot later. It removes itself when it stops.
    * connectivity from `ClusterScope.Cluster.State.topology/0`: the
      classification's status and side, and the number of known nodes that
      are not up
    * Horde distribution skew, only when Horde is loaded (checked once at
      start); otherwise the section is absent
    * the values compared with thresholds and baselines (`values`), the
      anomalies against the baselines, and the cost of this sample

  The last 120 samples are kept (`ClusterScope.Health.samples/0`).

  ## Scheduler utilisation: how and what it costs

  The busy and total wall time of each scheduler from
  `:erlang.statistics(:scheduler_wall_time)`, read once per sample; the
  utilisation is the delta of busy time over the delta of total time since
  the previous sample. Measured on a 2-core x86-64 (OTP 25):

    * reading it costs about 4 us (`:scheduler.sample/0` of runtime_tools
      reads the same data, plus the dirty IO schedulers, in about 10 us:
      the direct call is the cheaper of the two);
    * it needs `:erlang.system_flag(:scheduler_wall_time, true)`, which
      makes every scheduler take a timestamp when it goes to sleep and wakes
      up. The monitor turns it on for as long as it lives (the flag is
      counted per process: it never turns off someone else's). With it on,
      a worst case for it - two processes exchanging 200,000 messages, and
      100,000 spawn/await round trips, where schedulers sleep and wake
      constantly - ran 0.4-1.6% slower than with it off (medians of 5 runs,
      run-to-run noise about 1%).

  `:erlang.statistics(:runtime)` (CPU time of the VM) needs no flag but is
  not scheduler utilisation: it counts the schedulers' busy-waiting before
  they sleep and the other threads of the VM.

  ## Cost of a sample and self-protection

  A whole sample (collectors, baselines, alerts, ETS writes; about 2,300
  reductions) measured about 0.1 ms back to back and about 0.4 ms at the
  default 1 s interval, where the caches are cold, on a 2-core x86-64:
  0.04% of one core. `:erlang.memory/1` is about 30 us of it, the other
  collectors a few us each. The non-essential collectors (message queue
  scan, Horde skew) run in a separate low-priority process, at most every
  10 s and never more often than keeps them under half of the budget (a
  scan that took 30 ms waits at least 30 ms / (budget / 2) = 6 s before the
  next). `bench/monitor_overhead.exs` measures the whole: with 100,000 idle
  processes the monitor took 0.36% of one core (the scan, about 30 ms every
  10 s, is most of it).

  The monitor measures each sample's wall time and reductions (its
  "own cost") and compares, at every sample:

    * the node's load: the run queue above 2 per online scheduler, or the
      normal schedulers busy more than 90%;
    * its own cost: `typical sample time / interval` plus the collectors'
      `scan time / scan period` above the budget (default 0.01: 1% of one
      core). The typical sample time is the median of the last 5 samples
      taken while the node was not loaded: a sample under load mostly
      measures the wait for a scheduler, and one slow sample (a garbage
      collection, code loading) should not move the interval.

  When either holds it first stops the non-essential collectors (a running
  scan is stopped); if it still holds at the next sample, it doubles the
  interval, up to `max_interval_ms` (default 16 times the interval). When
  neither holds, it halves the interval at every sample back to the
  configured one, then resumes the collectors (only once its own cost leaves
  room for them: under half the budget). Samples forced with `sample_now/0`
  do not change the throttling.

  The state is in `ClusterScope.Health.status/0`: the interval in force,
  the reason (`run_queue`, `scheduler_utilization`, `own_cost` or nil), the
  collectors skipped, and the measured cost.

  Reads (`latest/0`, `alerts/0`, `status/0`, `thresholds/0`) come from an
  ETS table the monitor writes after each sample: they never wait for the
  monitor.

  ## Where the logic lives

  This module is the server: the timer, the state, the ETS table, the
  collector process and the subscribers. The rules are in pure modules
  tested on their own: `ClusterScope.Health.Throttle` (load, own cost and
  the throttling steps), `ClusterScope.Health.SystemMonitor` (the
  busy_dist_port system monitor slot), `ClusterScope.Health.SamplingOptions`
  (validation of `configure_sampling/1`), `ClusterScope.Health.Collectors`
  (what a sample reads), `ClusterScope.Health.Thresholds`,
  `ClusterScope.Health.Alerts` and `ClusterScope.Health.Baseline`.
  """

  use GenServer

  alias ClusterScope.Health.{
    Alerts,
    Background,
    Reading,
    Baseline,
    Collectors,
    SamplingOptions,
    SystemMonitor,
    Thresholds,
    Throttle
  }

  alias ClusterScope.StateKeeper

  @table __MODULE__
  @max_samples 120
  @scan_deadline_ms 30_000

  # -- API (see ClusterScope.Health) --------------------------------------------------

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The latest sample, or nil."
  @spec latest() :: map() | nil
  def latest, do: read(:latest, nil)

  @doc "The active alerts of this node."
  @spec alerts() :: [map()]
  def alerts, do: read(:alerts, [])

  @doc "The sampling and throttling state."
  @spec status() :: map() | nil
  def status, do: read(:status, nil)

  @doc "The thresholds in force."
  @spec thresholds() :: Thresholds.t() | nil
  def thresholds, do: read(:thresholds, nil)

  @doc "Whether the monitor runs on this node."
  @spec running?() :: boolean()
  # Its table outlives it (held by ClusterScope.StateKeeper until a restart).
  def running?,
    do:
      :ets.whereis(@table) != :undefined and
        :ets.info(@table, :owner) == Process.whereis(__MODULE__)

  defp read(key, default) do
    case :ets.lookup(@table, key) do
      [{^key, value}] -> value
      [] -> default
    end
  rescue
    ArgumentError -> default
  end

  @doc "The samples kept, oldest first."
  def samples, do: GenServer.call(__MODULE__, :samples)

  @doc "Takes a sample now and returns it (does not change the throttling)."
  def sample_now, do: GenServer.call(__MODULE__, :sample_now)

  @doc "Applies threshold changes (see `ClusterScope.Health.Thresholds.apply_changes/2`)."
  def set_thresholds(changes), do: GenServer.call(__MODULE__, {:set_thresholds, changes})

  @doc "Back to the default thresholds."
  def reset_thresholds, do: GenServer.call(__MODULE__, :reset_thresholds)

  @doc "Changes the sampling settings (see `ClusterScope.Health.configure_sampling/1`)."
  def configure(opts), do: GenServer.call(__MODULE__, {:configure, opts})

  @doc "The baselines (`ClusterScope.Health.Baseline.describe/1`)."
  def baselines, do: GenServer.call(__MODULE__, :baselines)

  @doc "Subscribes `pid` to alerts."
  def subscribe(pid), do: GenServer.call(__MODULE__, {:subscribe, pid})

  @doc "Ends a subscription."
  def unsubscribe(pid), do: GenServer.call(__MODULE__, {:unsubscribe, pid})

  # -- server ---------------------------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    :erlang.system_flag(:scheduler_wall_time, true)
    # Thresholds, active alerts (with their hysteresis) and subscribers
    # survive a crash of this server: its table goes to the keeper and back.
    StateKeeper.claim(@table, [:named_table, :protected, read_concurrency: true])

    subscribers =
      :subscribers
      |> read([])
      |> Enum.filter(&Process.alive?/1)
      |> Map.new(&{&1, Process.monitor(&1)})

    base =
      Keyword.get_lazy(opts, :interval_ms, fn -> ClusterScope.Config.get(:health_interval_ms) end)

    settings = SamplingOptions.defaults(base)

    state =
      %{
        base_interval: base,
        interval: base,
        max_interval: settings.max_interval,
        max_interval_set: nil,
        budget: settings.budget,
        scan_interval: settings.scan_interval,
        timer: nil,
        thresholds: read(:thresholds, nil) || Thresholds.defaults(),
        tracks: read(:tracks, %{}),
        seq: read(:seq, 0),
        samples: :queue.new(),
        sample_count: 0,
        samples_taken: 0,
        last_sample_at_ms: nil,
        subscribers: subscribers,
        prev: Reading.initial(),
        baselines: %{},
        membership_changes: 0,
        baselines_reset_at_ms: nil,
        sysmon: SystemMonitor.install(self()),
        busy_dist_port: 0,
        system_memory: Collectors.system_memory(),
        horde?: Code.ensure_loaded?(Horde.DynamicSupervisor),
        collector: Background.new(),
        throttle: Throttle.initial(),
        cost: %{last_us: 0, window: [], typical_us: nil, last_reductions: 0},
        cluster_state: nil
      }
      |> subscribe_cluster()

    :ets.insert(@table, {:thresholds, state.thresholds})
    publish_status(state)
    {:ok, schedule(state)}
  end

  @impl true
  def handle_call(:samples, _from, state), do: {:reply, :queue.to_list(state.samples), state}

  def handle_call(:sample_now, _from, state) do
    state = take_sample(state, true)
    {:reply, latest(), state}
  end

  def handle_call({:set_thresholds, changes}, _from, state) do
    case Thresholds.apply_changes(state.thresholds, changes) do
      {:ok, thresholds} ->
        :ets.insert(@table, {:thresholds, thresholds})
        {:reply, {:ok, thresholds}, %{state | thresholds: thresholds}}

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  def handle_call(:reset_thresholds, _from, state) do
    thresholds = Thresholds.defaults()
    :ets.insert(@table, {:thresholds, thresholds})
    {:reply, {:ok, thresholds}, %{state | thresholds: thresholds}}
  end

  def handle_call({:configure, opts}, _from, state) do
    case configure_opts(opts, state) do
      {:ok, new} ->
        # A new interval starts afresh; a new budget keeps the throttling in
        # force and lets the next samples move it.
        new =
          if {new.base_interval, new.max_interval} != {state.base_interval, state.max_interval},
            do: %{new | interval: new.base_interval, throttle: Throttle.initial()},
            else: new

        state = schedule(new)
        publish_status(state)
        {:reply, {:ok, status()}, state}

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  def handle_call(:baselines, _from, state),
    do: {:reply, Baseline.describe(state.baselines), state}

  def handle_call({:subscribe, pid}, _from, state) do
    if Map.has_key?(state.subscribers, pid),
      do: {:reply, :ok, state},
      else: {:reply, :ok, keep_subscribers(put_in(state.subscribers[pid], Process.monitor(pid)))}
  end

  def handle_call({:unsubscribe, pid}, _from, state) do
    {ref, subscribers} = Map.pop(state.subscribers, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    {:reply, :ok, keep_subscribers(%{state | subscribers: subscribers})}
  end

  @impl true
  def handle_info(:sample, state) do
    {:noreply, state |> Map.put(:timer, nil) |> take_sample(false) |> schedule()}
  end

  def handle_info({:monitor, _pid, :busy_dist_port, _port}, state) do
    {:noreply, %{state | busy_dist_port: state.busy_dist_port + 1}}
  end

  def handle_info({:collected, pid, result}, state) do
    if Background.running?(state.collector, pid) do
      c = Background.done(state.collector, result, state.scan_interval, state.budget, now_ms())
      {:noreply, %{state | collector: c}}
    else
      {:noreply, state}
    end
  end

  def handle_info({:cluster_scope, :cluster, %{type: type}}, state) when type in [:up, :down] do
    state = %{
      state
      | baselines: Baseline.reset(state.baselines, Baseline.cluster_size_dependent()),
        membership_changes: state.membership_changes + 1,
        baselines_reset_at_ms: System.system_time(:millisecond)
    }

    publish_status(state)
    {:noreply, state}
  end

  def handle_info({:cluster_scope, :cluster, _event}, state), do: {:noreply, state}

  def handle_info({:DOWN, _ref, :process, pid, reason}, state) do
    cond do
      Background.running?(state.collector, pid) ->
        last = %{status: :error, error: inspect(reason, limit: 5), finished_at_ms: now_ms()}

        {:noreply,
         %{state | collector: Background.stopped(state.collector, last, state.scan_interval)}}

      pid == state.cluster_state ->
        Process.send_after(self(), :resubscribe, 1_000)
        {:noreply, %{state | cluster_state: nil}}

      true ->
        {:noreply, keep_subscribers(%{state | subscribers: Map.delete(state.subscribers, pid)})}
    end
  end

  def handle_info(:resubscribe, state), do: {:noreply, subscribe_cluster(state)}

  def handle_info(other, state) do
    StateKeeper.handle_heir(other, @table)
    {:noreply, state}
  end

  defp keep_subscribers(state) do
    :ets.insert(@table, {:subscribers, Map.keys(state.subscribers)})
    state
  end

  @impl true
  def terminate(_reason, state) do
    SystemMonitor.uninstall(state.sysmon, self())
    Background.stop(state.collector)
    :ok
  end

  # -- sampling -------------------------------------------------------------------------

  defp take_sample(state, forced?) do
    started = System.monotonic_time(:microsecond)
    {:reductions, r0} = Process.info(self(), :reductions)
    now = now_ms()

    {reading, prev} = Reading.take(state.prev, state.system_memory, started)
    {sysmon, busy} = SystemMonitor.read(state.sysmon, state.busy_dist_port, self())
    state = %{state | sysmon: sysmon, busy_dist_port: 0}

    collector =
      state.collector
      |> Background.check_deadline(@scan_deadline_ms, state.scan_interval, now)
      |> Background.start(%{
        throttled: state.throttle.collectors_throttled,
        horde?: state.horde?,
        parent: self()
      })

    state = %{state | collector: collector}
    top = Collectors.refresh_top(state.collector.top)
    state = put_in(state.collector.top, top)

    values =
      reading
      |> Reading.values(Background.max_queue(state.collector, top), busy)
      |> put_horde(state)
      |> ClusterScope.NodeViews.CodeDrift.Watch.put_value()
      |> put_os(state)

    {baselines, anomalies} = Baseline.update(state.baselines, values)

    sample =
      %{
        node: node(),
        at_ms: now,
        interval_ms: state.interval,
        memory: reading.memory,
        limits: reading.limits,
        schedulers:
          Map.merge(reading.run_queues, %{
            utilization_pct: reading.utilization_pct,
            dirty_cpu_utilization_pct: reading.dirty_utilization_pct
          }),
        reductions_per_s: reading.reductions_per_s,
        message_queues:
          Background.message_queues(state.collector, top, state.throttle.collectors_throttled),
        busy_dist_port: busy,
        connectivity: reading.connectivity,
        values: values,
        anomalies: anomalies
      }
      |> put_horde_section(state)
      |> Map.put(:os, os_summary(state))

    {tracks, events, seq} =
      Alerts.evaluate(state.tracks, values, state.thresholds, %{
        node: node(),
        now_ms: now,
        seq: state.seq,
        sample: sample
      })

    notify(events, state.subscribers)

    {:reductions, r1} = Process.info(self(), :reductions)
    cost_us = System.monotonic_time(:microsecond) - started
    sample = Map.put(sample, :cost, %{wall_us: cost_us, reductions: r1 - r0})

    load = Throttle.load_reason(reading.run_queues, reading.utilization_pct)
    window = Throttle.cost_window(state.cost.window, cost_us, load != nil)

    state = %{
      state
      | tracks: tracks,
        seq: seq,
        baselines: baselines,
        prev: prev,
        cost: %{
          last_us: cost_us,
          window: window,
          typical_us: Throttle.median(window) || state.cost.typical_us || cost_us,
          last_reductions: r1 - r0
        },
        samples_taken: state.samples_taken + 1,
        last_sample_at_ms: now
    }

    state = if forced?, do: state, else: throttle(state, load)
    state = keep(state, sample)

    :ets.insert(@table, [
      {:latest, sample},
      {:alerts, Alerts.active(tracks)},
      {:tracks, tracks},
      {:seq, seq}
    ])

    publish_status(state)
    state
  end

  defp keep(state, sample) do
    if state.sample_count >= @max_samples do
      {_, q} = :queue.out(state.samples)
      %{state | samples: :queue.in(sample, q)}
    else
      %{state | samples: :queue.in(sample, state.samples), sample_count: state.sample_count + 1}
    end
  end

  defp put_horde(values, %{horde?: true, collector: %{horde: %{values: horde}}}),
    do: Map.merge(values, horde)

  defp put_horde(values, %{horde?: true}),
    do: Map.merge(values, ClusterScope.Horde.Findings.values(nil))

  defp put_horde(values, _state), do: values

  # The machine's values from the last collector run (nil until the first).
  defp put_os(values, %{collector: %{os: %{values: os}}}), do: Map.merge(values, os)

  defp put_os(values, _state),
    do: Map.merge(values, %{machine_memory_pct: nil, disk_usage_pct: nil})

  defp os_summary(%{collector: %{os: %{summary: summary}}}), do: summary
  defp os_summary(_state), do: ClusterScope.NodeViews.Os.pending_summary()

  defp put_horde_section(sample, %{horde?: true, collector: c}),
    do: Map.put(sample, :horde, c.horde || %{supervisors: [], max_skew: nil, status: :pending})

  defp put_horde_section(sample, _state), do: sample

  defp notify([], _subscribers), do: :ok

  defp notify(events, subscribers) do
    for {action, alert} <- events do
      for pid <- Map.keys(subscribers), do: send(pid, {:cluster_scope, :alert, action, alert})
      ClusterScope.Telemetry.alert(action, alert)
    end

    :ok
  end

  # -- self-protection ------------------------------------------------------------------

  defp throttle(state, load) do
    {throttle, interval, action} =
      Throttle.step(state.throttle, %{
        interval: state.interval,
        base_interval: state.base_interval,
        max_interval: state.max_interval,
        budget: state.budget,
        typical_us: state.cost.typical_us,
        collectors_fraction: Background.fraction(state.collector),
        load: load
      })

    state =
      if action == :stop_collectors,
        do: %{state | collector: Background.stop(state.collector)},
        else: state

    %{state | throttle: throttle, interval: interval}
  end

  defp schedule(state) do
    if state.timer, do: Process.cancel_timer(state.timer)
    %{state | timer: Process.send_after(self(), :sample, state.interval)}
  end

  defp publish_status(state) do
    t = state.throttle

    sample_fraction = Throttle.sample_fraction(state.cost.typical_us, state.interval)

    collectors = if t.collectors_throttled, do: 0.0, else: Background.fraction(state.collector)

    skipped =
      if t.collectors_throttled,
        do: [:message_queues | if(state.horde?, do: [:horde_skew], else: [])],
        else: []

    status = %{
      node: node(),
      base_interval_ms: state.base_interval,
      interval_ms: state.interval,
      max_interval_ms: state.max_interval,
      throttled: state.interval > state.base_interval or t.collectors_throttled,
      reason: t.reason,
      skipped_collectors: skipped,
      own_cost: %{
        last_sample_us: state.cost.last_us,
        typical_sample_us: state.cost.typical_us,
        last_sample_reductions: state.cost.last_reductions,
        sample_fraction: Float.round(sample_fraction, 6),
        collectors_fraction: Float.round(collectors * 1.0, 6),
        total_fraction: Float.round(sample_fraction + collectors, 6),
        budget: state.budget
      },
      collectors:
        Background.status(
          state.collector,
          t.collectors_throttled,
          state.horde?,
          state.scan_interval
        ),
      busy_dist_port: SystemMonitor.status(state.sysmon),
      samples_taken: state.samples_taken,
      last_sample_at_ms: state.last_sample_at_ms,
      membership_changes: state.membership_changes,
      baselines_reset_at_ms: state.baselines_reset_at_ms
    }

    :ets.insert(@table, {:status, status})
  end

  # -- configuration ----------------------------------------------------------------------

  @settings [:base_interval, :max_interval, :max_interval_set, :budget, :scan_interval]

  defp configure_opts(:defaults, state) do
    base = ClusterScope.Config.get(:health_interval_ms)
    {:ok, Map.merge(state, SamplingOptions.defaults(base))}
  end

  defp configure_opts(opts, state) do
    case SamplingOptions.apply_changes(Map.take(state, @settings), opts) do
      {:ok, settings} ->
        state = Map.merge(state, settings)

        # A new scan interval brings the next scan forward if it is due sooner.
        if has_option?(opts, :scan_interval_ms) do
          due = System.monotonic_time(:millisecond) + settings.scan_interval
          {:ok, update_in(state.collector.due_at, &min(&1, due))}
        else
          {:ok, state}
        end

      {:error, _} = error ->
        error
    end
  end

  defp has_option?(opts, key) when is_map(opts), do: Map.has_key?(opts, key)
  defp has_option?(opts, key), do: Keyword.has_key?(opts, key)

  # -- cluster membership -----------------------------------------------------------------

  defp subscribe_cluster(state) do
    case Process.whereis(ClusterScope.Cluster.State) do
      nil ->
        Process.send_after(self(), :resubscribe, 1_000)
        state

      pid ->
        ClusterScope.Cluster.State.subscribe(self())
        Process.monitor(pid)
        %{state | cluster_state: pid}
    end
  catch
    :exit, _ ->
      Process.send_after(self(), :resubscribe, 1_000)
      state
  end

  defp now_ms, do: System.system_time(:millisecond)
end
