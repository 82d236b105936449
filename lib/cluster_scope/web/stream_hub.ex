defmodule ClusterScope.Web.StreamHub do
  @moduledoc """
  What the live streams (`ClusterScope.Web.Stream`) read besides the
  cluster event history: the history of alert changes across the cluster,
  and the wake-ups of the streams.

  ## Alerts

  Alerts live on every node's monitor and have no cluster-wide history, so
  the hub keeps one: each alert raised or cleared anywhere becomes an entry
  with a sequence number in a ring of the last #{1_000} (a cleared alert
  carries `cleared_at_ms`). This node's alerts arrive at once (a monitor
  subscription); the other agent nodes' alerts are read every #{500} ms
  (`ClusterScope.Health.cluster_call/2`, one fan-out, in a task so the hub
  never waits) while a stream is open and for #{div(300_000, 60_000)}
  minutes after the last one closed, so a client that reconnects within
  that time (an endpoint restart, `max_stream_s`) misses nothing. The ring
  has an epoch (random at start): a cursor of an earlier hub replays the
  whole ring rather than trusting numbers that mean nothing now.

  ## Wake-ups

  A stream subscribes with the topics it follows. When a cluster event or
  an alert change arrives, every stream of that topic that has no wake-up
  pending gets one `{:cluster_scope_stream, :wake}` message; it reads what
  is new itself and calls `ready/0`. A stream's mailbox holds at most one
  wake-up whatever the rate of events, and the hub never blocks on a
  stream: a slow one only falls behind (and is dropped by its socket's send
  timeout).

  ## Cost

  Subscribing, `ready/0` and `alerts_since/2` are one call or cast to this
  process (O(new entries) for a read). The ring is bounded (#{1_000}
  entries); the subscribers are the open streams, bounded by admission.
  """

  use GenServer

  alias ClusterScope.Health

  @max_entries 1_000
  @keep :cluster_scope_keep_stream_hub
  @poll_ms 500
  @linger_ms 300_000

  @typedoc "A topic a stream follows through the hub."
  @type topic :: :cluster | :alerts

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Wakes the calling process on news of `topics` until it exits or unsubscribes."
  @spec subscribe([topic()]) :: :ok
  def subscribe(topics), do: GenServer.call(__MODULE__, {:subscribe, self(), topics})

  @doc "Ends the calling process's subscription."
  @spec unsubscribe() :: :ok
  def unsubscribe, do: GenServer.call(__MODULE__, {:unsubscribe, self()})

  @doc "The caller has read what was new: its next wake-up may be sent."
  @spec ready() :: :ok
  def ready, do: GenServer.cast(__MODULE__, {:ready, self()})

  @doc """
  The alert entries after `{epoch, seq}` (oldest first), at most `limit`,
  and the position to pass next. `nil` means "from now": no entries.
  A position of another epoch (the hub restarted) replays the whole ring.
  """
  @spec alerts_since({String.t(), non_neg_integer()} | nil, pos_integer()) ::
          {[{non_neg_integer(), map()}], {String.t(), non_neg_integer()}}
  def alerts_since(position, limit \\ 200),
    do: GenServer.call(__MODULE__, {:alerts_since, position, limit})

  @doc "The current position of the alert ring (`{epoch, last seq}`)."
  @spec alerts_position() :: {String.t(), non_neg_integer()}
  def alerts_position, do: GenServer.call(__MODULE__, :alerts_position)

  # -- server ---------------------------------------------------------------------------

  @impl true
  def init(_opts) do
    # The alert history (epoch, numbers, ring, active alerts) survives a crash
    # of this server (ClusterScope.StateKeeper): a stream that resumes after
    # it misses nothing. Subscribers (the open streams) subscribe again.
    {_, keep} = ClusterScope.StateKeeper.claim(@keep, [:set, :protected, :named_table])

    kept =
      case :ets.lookup(keep, :alerts) do
        [{_, kept}] ->
          kept

        [] ->
          %{
            epoch: Base.url_encode64(:crypto.strong_rand_bytes(6), padding: false),
            seq: 0,
            ring: :queue.new(),
            count: 0,
            active: %{}
          }
      end

    state = %{
      keep: keep,
      sources: %{},
      epoch: kept.epoch,
      seq: kept.seq,
      ring: kept.ring,
      count: kept.count,
      active: kept.active,
      subscribers: %{},
      last_left_ms: nil,
      poll: nil,
      timer: nil
    }

    {:ok, state |> subscribe_sources() |> schedule()}
  end

  # The cluster state and the health monitor, watched: when one restarts
  # (with ClusterScope's supervisor) the hub subscribes again at its next
  # tick or subscription.
  defp subscribe_sources(state) do
    sources =
      for {name, subscribe} <- [
            {ClusterScope.Cluster.State, fn -> ClusterScope.Cluster.State.subscribe(self()) end},
            {ClusterScope.Health.Monitor, fn -> Health.subscribe_to_alerts() end}
          ],
          reduce: state.sources do
        sources ->
          with nil <- Map.get(sources, name),
               pid when is_pid(pid) <- Process.whereis(name),
               :ok <- safe(subscribe) do
            Map.put(sources, name, Process.monitor(pid))
          else
            _ -> sources
          end
      end

    %{state | sources: sources}
  end

  @impl true
  def handle_call({:subscribe, pid, topics}, _from, state) do
    state =
      case state.subscribers do
        %{^pid => sub} ->
          put_in(state.subscribers[pid], %{sub | topics: topics})

        _ ->
          ref = Process.monitor(pid)
          put_in(state.subscribers[pid], %{ref: ref, topics: topics, pending: false})
      end

    state = subscribe_sources(state)

    state = if :alerts in topics and state.poll == nil, do: start_poll(state), else: state
    {:reply, :ok, schedule(state)}
  end

  def handle_call({:unsubscribe, pid}, _from, state), do: {:reply, :ok, drop(state, pid)}

  def handle_call({:alerts_since, position, limit}, _from, state) do
    {:reply, read_alerts(state, position, limit), state}
  end

  def handle_call(:alerts_position, _from, state), do: {:reply, {state.epoch, state.seq}, state}

  @impl true
  def handle_cast({:ready, pid}, state) do
    case state.subscribers do
      %{^pid => sub} -> {:noreply, put_in(state.subscribers[pid], %{sub | pending: false})}
      _ -> {:noreply, state}
    end
  end

  @impl true
  def handle_info({:cluster_scope, :cluster, _event}, state),
    do: {:noreply, wake(state, :cluster)}

  def handle_info({:cluster_scope, :alert, action, alert}, state) do
    key = {alert.node, alert.id}

    state =
      case action do
        :raised -> raised(state, key, alert)
        :cleared -> cleared(state, key, alert)
        _ -> state
      end

    {:noreply, state}
  end

  def handle_info(:tick, state) do
    state = subscribe_sources(%{state | timer: nil})
    state = if state.poll == nil and polling?(state), do: start_poll(state), else: state
    {:noreply, schedule(state)}
  end

  def handle_info({ref, answers}, %{poll: {_pid, ref}} = state) when is_reference(ref) do
    Process.demonitor(ref, [:flush])
    {:noreply, apply_poll(%{state | poll: nil}, answers)}
  end

  def handle_info({:DOWN, ref, :process, _pid, _}, %{poll: {_, ref}} = state),
    do: {:noreply, %{state | poll: nil}}

  def handle_info({:DOWN, ref, :process, pid, _}, state) do
    case Enum.find(state.sources, fn {_, r} -> r == ref end) do
      {name, _} -> {:noreply, %{state | sources: Map.delete(state.sources, name)}}
      nil -> {:noreply, drop(state, pid)}
    end
  end

  def handle_info(other, state) do
    ClusterScope.StateKeeper.handle_heir(other, state.keep)
    {:noreply, state}
  end

  # -- alerts ---------------------------------------------------------------------------

  defp start_poll(state) do
    task =
      Task.Supervisor.async_nolink(ClusterScope.OperationSupervisor, fn ->
        {answers, _errors} = Health.cluster_call(:local_alerts, [])
        answers
      end)

    %{state | poll: {task.pid, task.ref}}
  catch
    :exit, _ -> state
  end

  # A node that did not answer keeps its alerts as they were (it may be
  # unreachable for a moment): only the nodes that answered are compared.
  defp apply_poll(state, answers) do
    seen =
      for {node, alerts} <- answers, is_list(alerts), alert <- alerts, into: %{} do
        {{node, alert.id}, alert}
      end

    answered = MapSet.new(answers, &elem(&1, 0))

    state =
      Enum.reduce(seen, state, fn {key, alert}, state ->
        if Map.has_key?(state.active, key), do: state, else: raised(state, key, alert)
      end)

    state.active
    |> Enum.filter(fn {{node, _} = key, _} ->
      MapSet.member?(answered, node) and not Map.has_key?(seen, key)
    end)
    |> Enum.reduce(state, fn {key, alert}, state -> cleared(state, key, alert) end)
  end

  defp raised(state, key, alert) do
    if Map.has_key?(state.active, key) do
      state
    else
      state = %{state | active: Map.put(state.active, key, alert)}
      state |> append(alert) |> wake(:alerts)
    end
  end

  defp cleared(state, key, alert) do
    if Map.has_key?(state.active, key) do
      alert = Map.put_new(alert, :cleared_at_ms, System.system_time(:millisecond))
      state = %{state | active: Map.delete(state.active, key)}
      state |> append(alert) |> wake(:alerts)
    else
      state
    end
  end

  defp append(state, alert) do
    seq = state.seq + 1
    ring = :queue.in({seq, alert}, state.ring)

    state =
      if state.count >= @max_entries do
        {_, ring} = :queue.out(ring)
        %{state | seq: seq, ring: ring}
      else
        %{state | seq: seq, ring: ring, count: state.count + 1}
      end

    # Alert changes are rare (hysteresis): the whole history is written each time.
    :ets.insert(
      state.keep,
      {:alerts, Map.take(state, [:epoch, :seq, :ring, :count, :active])}
    )

    state
  end

  defp read_alerts(state, nil, _limit), do: {[], {state.epoch, state.seq}}

  defp read_alerts(state, {epoch, seq}, limit) do
    after_seq = if epoch == state.epoch, do: seq, else: 0

    entries =
      state.ring
      |> :queue.to_list()
      |> Enum.filter(fn {s, _} -> s > after_seq end)
      |> Enum.take(limit)

    last = entries |> List.last() |> then(&if(&1, do: elem(&1, 0), else: max(after_seq, 0)))
    last = if epoch == state.epoch or entries != [], do: last, else: state.seq
    {entries, {state.epoch, last}}
  end

  # -- subscribers ----------------------------------------------------------------------

  defp wake(state, topic) do
    subscribers =
      Map.new(state.subscribers, fn {pid, sub} ->
        if topic in sub.topics and not sub.pending do
          send(pid, {:cluster_scope_stream, :wake})
          {pid, %{sub | pending: true}}
        else
          {pid, sub}
        end
      end)

    %{state | subscribers: subscribers}
  end

  defp drop(state, pid) do
    case Map.pop(state.subscribers, pid) do
      {nil, _} ->
        state

      {sub, subscribers} ->
        Process.demonitor(sub.ref, [:flush])
        %{state | subscribers: subscribers, last_left_ms: now_ms()}
    end
  end

  defp polling?(state) do
    Enum.any?(state.subscribers, fn {_, sub} -> :alerts in sub.topics end) or
      (state.last_left_ms != nil and now_ms() - state.last_left_ms < @linger_ms)
  end

  defp schedule(%{timer: nil} = state) do
    if polling?(state),
      do: %{state | timer: Process.send_after(self(), :tick, @poll_ms)},
      else: state
  end

  defp schedule(state), do: state

  defp safe(fun) do
    fun.()
  catch
    :exit, _ -> :error
  end

  defp now_ms, do: System.monotonic_time(:millisecond)
end
