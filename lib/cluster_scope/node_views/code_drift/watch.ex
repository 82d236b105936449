defmodule ClusterScope.NodeViews.CodeDrift.Watch do
  @moduledoc """
  Watches the cluster's code for drift that lasts, and gives the health
  monitor the `code_drift_modules` value: how many modules have been loaded
  at different versions on different nodes for at least
  `code_drift_alert_after_ms` (default five minutes: longer than a rolling
  deploy). Its threshold (`ClusterScope.Health.Thresholds`, warning at 1)
  turns that into an alert with the monitor's hysteresis.

  ## Who checks

  One node of the cluster checks: the node with the smallest name among the
  connected nodes running ClusterScope (every node computes the same
  choice from its own view; during a split each side has one). The others
  report 0. So the background cost of the cluster is one comparison per
  `code_drift_check_interval_ms` (default 30 s), not one per node: each
  node hashes its modules once per interval (see
  `ClusterScope.NodeViews.CodeDrift` for the cost) and sends 2 KiB.

  ## Protects against

  The check runs in this low-priority server, never in the monitor; the
  monitor reads its latest result from a public ETS table
  (`put_value/1`), so a slow node delays the watch (by at most the node
  timeout), never a health sample. A module's drift time restarts when it
  stops differing; a node that does not answer is left out of that check
  (it neither raises nor clears a module's drift).
  """

  use GenServer

  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Config
  alias ClusterScope.NodeViews.CodeDrift

  @table __MODULE__
  @shown 20

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  The latest check as this node made it: `%{leader?:, checked_at_ms:,
  drifting:, persistent:, since:}` (`persistent` lists up to 20 module
  names drifting past the alert time, `since` their first-seen times), or
  `nil` before the first check or when the watch is not running.
  """
  @spec status() :: map() | nil
  def status do
    case :ets.lookup(@table, :status) do
      [{:status, status}] -> status
      [] -> nil
    end
  catch
    :error, :badarg -> nil
  end

  @doc """
  `values` with `:code_drift_modules` added when the watch has checked
  (the monitor calls it at each sample: one ETS read).
  """
  @spec put_value(map()) :: map()
  def put_value(values) do
    case status() do
      %{value: value} -> Map.put(values, :code_drift_modules, value)
      # Before the first check: unknown (no alert), but the key is there,
      # so a sample has the same shape from its first one on.
      nil -> Map.put(values, :code_drift_modules, nil)
    end
  end

  @doc """
  Runs a check now and returns its status, and schedules the next one
  `code_drift_check_interval_ms` from now (for operators and tests, after
  changing the interval).
  """
  @spec check_now(timeout()) :: map()
  def check_now(timeout \\ 30_000), do: GenServer.call(__MODULE__, :check_now, timeout)

  @doc """
  The node that checks, from `agents` (connected nodes running
  ClusterScope): the smallest name, this node included.
  """
  @spec leader([node()]) :: node()
  def leader(agents) do
    connected = [node() | Node.list()]
    [node() | Enum.filter(agents, &(&1 in connected))] |> Enum.min()
  end

  @doc """
  Pure: the next first-seen map and the status after a check at `now_ms`
  found `drift` (`%{module => versions}`), with the alert after
  `after_ms`.
  """
  @spec step(%{binary() => integer()}, map(), integer(), non_neg_integer()) ::
          {%{binary() => integer()}, map()}
  def step(first_seen, drift, now_ms, after_ms) do
    first_seen =
      Map.new(drift, fn {module, _versions} ->
        {module, Map.get(first_seen, module, now_ms)}
      end)

    persistent =
      first_seen
      |> Enum.filter(fn {_m, at} -> now_ms - at >= after_ms end)
      |> Enum.sort_by(fn {m, at} -> {at, m} end)

    status = %{
      leader?: true,
      checked_at_ms: now_ms,
      drifting: map_size(drift),
      value: length(persistent),
      persistent: persistent |> Enum.take(@shown) |> Enum.map(&elem(&1, 0)),
      since: persistent |> Enum.take(@shown) |> Map.new(),
      alert_after_ms: after_ms
    }

    {first_seen, status}
  end

  @impl true
  def init(_opts) do
    Process.flag(:priority, :low)
    :ets.new(@table, [:named_table, :protected, read_concurrency: true])
    {:ok, schedule(%{first_seen: %{}, timer: nil})}
  end

  @impl true
  def handle_info(:check, state), do: {:noreply, schedule(check(state))}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def handle_call(:check_now, _from, state) do
    # Rescheduled too, so a changed interval applies from now.
    state = schedule(check(state))
    {:reply, status(), state}
  end

  defp schedule(state) do
    if state.timer, do: Process.cancel_timer(state.timer)
    timer = Process.send_after(self(), :check, Config.get(:code_drift_check_interval_ms))
    %{state | timer: timer}
  end

  defp check(state) do
    now = System.system_time(:millisecond)

    if leader(Heartbeat.agent_nodes()) == node() do
      case CodeDrift.version_drift(nil) do
        {:ok, drift, _answered, _errors} ->
          {first_seen, status} =
            step(state.first_seen, drift, now, Config.get(:code_drift_alert_after_ms))

          :ets.insert(@table, {:status, status})
          %{state | first_seen: first_seen}

        {:error, _reason} ->
          # The core is not loaded: nothing measured, the value stays.
          state
      end
    else
      :ets.insert(
        @table,
        {:status,
         %{leader?: false, checked_at_ms: now, drifting: 0, value: 0, persistent: [], since: %{}}}
      )

      %{state | first_seen: %{}}
    end
  end
end
