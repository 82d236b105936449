defmodule ClusterScope.Health.Throttle do
  @moduledoc """
  The health monitor's self-protection, as pure functions: whether the node
  is loaded, what the monitor's own cost is, and the next step of the
  throttling (stop the non-essential collectors, lengthen or shorten the
  interval, resume the collectors). `ClusterScope.Health.Monitor` calls
  `step/2` after every sample it was not forced to take; nothing here
  reads the clock or touches a process, so each rule is tested directly.

  The rules (see `ClusterScope.Health.Monitor` for why):

    * the node is loaded when the run queue is above 2 per online scheduler
      or the normal schedulers are busy more than 90%;
    * the monitor's own cost is `typical sample time / interval` plus the
      collectors' `scan time / scan period`; it is too high above the
      budget;
    * when either holds, the collectors are stopped first; if it still holds
      at the next step the interval doubles, up to the maximum (a cost
      that comes only from the collectors, already stopped, does not move
      the interval);
    * when neither holds, the interval halves at every step back to the
      configured one, then the collectors resume once the sample cost is
      under half the budget.

  Every function is O(1) except `median/1` (O(n log n) over the cost
  window of at most 5 samples).
  """

  @typedoc "The throttling state kept by the monitor."
  @type t :: %{collectors_throttled: boolean(), reason: reason()}

  @typedoc "Why the monitor backs off."
  @type reason :: :run_queue | :scheduler_utilization | :own_cost | nil

  @typedoc """
  What `step/2` needs: the intervals in force (ms), the budget (a fraction
  of one core), the typical sample time (us) and the collectors' fraction
  of one core, and the load reason of this sample (`load_reason/2`).
  """
  @type inputs :: %{
          interval: pos_integer(),
          base_interval: pos_integer(),
          max_interval: pos_integer(),
          budget: float(),
          typical_us: non_neg_integer(),
          collectors_fraction: float(),
          load: reason()
        }

  @cost_window 5

  @doc "The state of a monitor that is not throttled."
  @spec initial() :: t()
  def initial, do: %{collectors_throttled: false, reason: nil}

  @doc """
  Why the node counts as loaded, or nil: `:run_queue` when the run queue is
  above 2 per online scheduler, `:scheduler_utilization` when the normal
  schedulers are busy more than 90%.
  """
  @spec load_reason(%{run_queue: non_neg_integer(), online: pos_integer()}, number() | nil) ::
          reason()
  def load_reason(rq, util) do
    cond do
      rq.run_queue > rq.online * 2 -> :run_queue
      is_number(util) and util > 90.0 -> :scheduler_utilization
      true -> nil
    end
  end

  @doc """
  One step of the throttling after a sample. Returns the new throttling
  state, the new interval, and whether a running collector must be stopped
  (`:stop_collectors`) or not (`:keep`).
  """
  @spec step(t(), inputs()) :: {t(), pos_integer(), :stop_collectors | :keep}
  def step(t, inputs) do
    %{interval: interval, base_interval: base, budget: budget, load: load} = inputs
    sample_fraction = sample_fraction(inputs.typical_us, interval)
    collectors = if t.collectors_throttled, do: 0.0, else: inputs.collectors_fraction
    reason = load || if(sample_fraction + collectors > budget, do: :own_cost)

    cond do
      # First step: the non-essential collectors.
      reason != nil and not t.collectors_throttled ->
        {%{collectors_throttled: true, reason: reason}, interval, :stop_collectors}

      reason != nil and (load != nil or sample_fraction > budget) ->
        {%{t | reason: reason}, min(interval * 2, inputs.max_interval), :keep}

      reason != nil ->
        {%{t | reason: reason}, interval, :keep}

      interval > base ->
        {t, max(div(interval, 2), base), :keep}

      t.collectors_throttled and sample_fraction <= budget / 2 ->
        {initial(), interval, :keep}

      t.collectors_throttled ->
        {%{t | reason: :own_cost}, interval, :keep}

      true ->
        {%{t | reason: nil}, interval, :keep}
    end
  end

  @doc "The fraction of one core a sample of `typical_us` every `interval_ms` costs (0.0 when unknown)."
  @spec sample_fraction(non_neg_integer() | nil, pos_integer()) :: float()
  def sample_fraction(nil, _interval_ms), do: 0.0
  def sample_fraction(typical_us, interval_ms), do: typical_us / (interval_ms * 1_000)

  @doc """
  The fraction of one core the collectors cost: the last scan's time over
  the period between scans (0.0 before a scan finished).
  """
  @spec collectors_fraction(non_neg_integer() | nil, pos_integer() | nil) :: float()
  def collectors_fraction(cost_us, period_ms)
      when is_integer(cost_us) and is_integer(period_ms) and period_ms > 0,
      do: cost_us / (period_ms * 1_000)

  def collectors_fraction(_cost_us, _period_ms), do: 0.0

  @doc """
  The period until the next scan after one that took `cost_us`: at least
  `scan_interval_ms`, and long enough to keep the collectors under half the
  budget (a 30 ms scan with a 1% budget waits 6 s).
  """
  @spec collector_period(pos_integer(), non_neg_integer(), float()) :: pos_integer()
  def collector_period(scan_interval_ms, cost_us, budget),
    do: max(scan_interval_ms, round(cost_us / 1_000 / (budget / 2)))

  @doc """
  The window of recent sample costs with `cost_us` added, keeping the last
  #{@cost_window}. A sample taken while the node is loaded mostly measures
  the wait for a scheduler, not the monitor's work: it is left out (the load
  is its own reason to back off).
  """
  @spec cost_window([non_neg_integer()], non_neg_integer(), boolean()) :: [non_neg_integer()]
  def cost_window(window, _cost_us, true = _loaded?), do: window
  def cost_window(window, cost_us, false), do: Enum.take([cost_us | window], @cost_window)

  @doc "The median of a list (the upper one for an even length), nil for an empty list."
  @spec median([number()]) :: number() | nil
  def median([]), do: nil

  def median(list) do
    sorted = Enum.sort(list)
    Enum.at(sorted, div(length(sorted), 2))
  end
end
