defmodule ClusterScope.Health.Background do
  @moduledoc """
  The health monitor's non-essential collectors: the message-queue scan,
  the Horde findings and the machine's OS data (`Collectors.os/0`), run in one low-priority process of their own so a slow
  scan never delays a sample.

  The state here is a plain map the monitor keeps (`new/0`): the running
  scan (pid, monitor, start), when the next is due, the last results and the
  pacing period. Why a process and a deadline: the queue scan walks every
  process of the node and Horde calls can wait on other nodes; a sample must
  answer within its interval whatever they do. A scan that runs past its
  deadline is killed and reported `:incomplete`; one that crashes is
  reported `:error`; the next is paced so the collectors stay under half of
  the monitor's budget (`ClusterScope.Health.Throttle.collector_period/3`).

  Every function but `start/2` and `stop/1` (which spawn and kill the scan
  process) is pure, so tests call them directly.
  """

  alias ClusterScope.Health.{Collectors, Throttle}

  @typedoc "The collectors' state, kept by the monitor."
  @type t :: %{
          running: nil | {pid(), reference(), integer()},
          due_at: integer(),
          top: list(),
          last: nil | map(),
          horde: nil | map(),
          os: nil | map(),
          period: nil | pos_integer()
        }

  @doc "A collectors' state whose first scan is due now."
  @spec new() :: t()
  def new,
    do: %{running: nil, due_at: mono_ms(), top: [], last: nil, horde: nil, os: nil, period: nil}

  @doc """
  Starts a scan when none runs, the collectors are not throttled and one is
  due. The scan sends `{:collected, pid, result}` to `parent`; the monitor
  also gets its `:DOWN`. Options: `:throttled`, `:horde?`, `:parent`.
  """
  @spec start(t(), map()) :: t()
  def start(%{running: nil} = c, %{throttled: false, horde?: horde?, parent: parent}) do
    if mono_ms() >= c.due_at do
      {pid, ref} = :erlang.spawn_opt(fn -> scan(parent, horde?) end, [:monitor, priority: :low])
      %{c | running: {pid, ref, mono_ms()}}
    else
      c
    end
  end

  def start(c, _opts), do: c

  defp scan(parent, horde?) do
    started = System.monotonic_time(:microsecond)
    {:reductions, r0} = Process.info(self(), :reductions)
    queues = Collectors.scan_message_queues()
    horde = if horde?, do: Collectors.horde()
    os = Collectors.os()
    {:reductions, r1} = Process.info(self(), :reductions)

    send(parent, {
      :collected,
      self(),
      %{
        queues: queues,
        horde: horde,
        os: os,
        cost_us: System.monotonic_time(:microsecond) - started,
        reductions: r1 - r0
      }
    })
  end

  @doc "Whether `pid` is the running scan."
  @spec running?(t(), pid()) :: boolean()
  def running?(%{running: {pid, _, _}}, pid), do: true
  def running?(_c, _pid), do: false

  @doc "Kills the running scan, if any, and forgets it."
  @spec stop(t()) :: t()
  def stop(%{running: {pid, ref, _}} = c) do
    Process.demonitor(ref, [:flush])
    Process.exit(pid, :kill)
    %{c | running: nil}
  end

  def stop(c), do: c

  @doc """
  Stops a scan that has run longer than `deadline_ms` and records it as
  `:incomplete`; the next one is due `scan_interval` from now.
  """
  @spec check_deadline(t(), pos_integer(), pos_integer(), integer()) :: t()
  def check_deadline(%{running: {_pid, _ref, at}} = c, deadline_ms, scan_interval, now_ms) do
    if mono_ms() - at > deadline_ms do
      c
      |> stop()
      |> stopped(
        %{
          status: :incomplete,
          error: "did not finish within #{deadline_ms} ms",
          finished_at_ms: now_ms
        },
        scan_interval
      )
    else
      c
    end
  end

  def check_deadline(c, _deadline_ms, _scan_interval, _now_ms), do: c

  @doc """
  Records a scan that ended without a result (`last` says how), keeping the
  previous scan's counts; the next is due `scan_interval` from now.
  """
  @spec stopped(t(), map(), pos_integer()) :: t()
  def stopped(c, last, scan_interval) do
    previous = c.last || %{}

    %{
      c
      | running: nil,
        last: Map.merge(Map.take(previous, [:scanned, :cost_us, :reductions]), last),
        due_at: mono_ms() + scan_interval
    }
  end

  @doc """
  Records a scan's result and paces the next one: due after the period that
  keeps the collectors under half of `budget`.
  """
  @spec done(t(), map(), pos_integer(), number(), integer()) :: t()
  def done(%{running: {_pid, ref, _}} = c, result, scan_interval, budget, now_ms) do
    Process.demonitor(ref, [:flush])
    period = Throttle.collector_period(scan_interval, result.cost_us, budget)

    %{
      c
      | running: nil,
        last: %{
          status: :ok,
          scanned: result.queues.scanned,
          cost_us: result.cost_us,
          reductions: result.reductions,
          finished_at_ms: now_ms
        },
        top: result.queues.top,
        horde: result.horde,
        os: Map.get(result, :os),
        period: period,
        due_at: mono_ms() + period
    }
  end

  @doc "The fraction of one scheduler the collectors take at their pace."
  @spec fraction(t()) :: float()
  def fraction(c), do: Throttle.collectors_fraction(c.last[:cost_us], c.period)

  @doc "The sample's `message_queues` section: the top queues and the last scan."
  @spec message_queues(t(), list(), boolean()) :: map()
  def message_queues(c, top, throttled?) do
    last = c.last || %{}

    %{
      top: Enum.map(top, &Map.delete(&1, :local_pid)),
      status:
        cond do
          throttled? -> :throttled
          last == %{} -> :pending
          true -> Map.get(last, :status, :ok)
        end,
      last_scan_at_ms: last[:finished_at_ms],
      processes_scanned: last[:scanned],
      scan_cost_us: last[:cost_us]
    }
  end

  @doc "The longest queue seen, `nil` before the first scan."
  @spec max_queue(t(), list()) :: non_neg_integer() | nil
  def max_queue(%{last: nil}, _top), do: nil
  def max_queue(_c, []), do: 0
  def max_queue(_c, [first | _]), do: first.message_queue_len

  @doc "The status's `collectors` section."
  @spec status(t(), boolean(), boolean(), pos_integer()) :: map()
  def status(c, throttled?, horde?, scan_interval) do
    last = c.last || %{}

    %{
      message_queues: %{
        status: if(throttled?, do: :throttled, else: Map.get(last, :status, :pending)),
        running: c.running != nil,
        last_scan_at_ms: last[:finished_at_ms],
        processes_scanned: last[:scanned],
        cost_us: last[:cost_us],
        reductions: last[:reductions],
        period_ms: c.period || scan_interval,
        min_interval_ms: scan_interval
      },
      horde_skew: if(horde?, do: :enabled, else: :absent)
    }
  end

  defp mono_ms, do: System.monotonic_time(:millisecond)
end
