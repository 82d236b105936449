defmodule ClusterScope.Trace.Calibration do
  @moduledoc """
  What one trace event costs on this node, measured once.

  The throttle turns counted events into an overhead estimate (events per
  window × cost per event ÷ window), so the cost has to be this node's own:
  it depends on the CPU, the OTP release and the load. The first call
  measures it: a local function is called #{20_000} times without tracing and
  #{20_000} times with a meta trace pattern sending each call to a sink
  process, and the sink's own time to receive them is added. The result
  (nanoseconds per event, at least 100) is kept in `:persistent_term`; the
  measurement takes a few tens of milliseconds and runs once per node.
  """

  @key {__MODULE__, :event_cost_ns}
  @calls 20_000

  @doc "The measured cost of one trace event, in nanoseconds."
  @spec event_cost_ns() :: pos_integer()
  def event_cost_ns do
    case :persistent_term.get(@key, nil) do
      nil ->
        cost = measure()
        :persistent_term.put(@key, cost)
        cost

      cost ->
        cost
    end
  end

  @doc false
  # The probe: a function of this module, traced only during calibration.
  def probe(x), do: x + 1

  @doc "Measures again (for benchmarks); does not replace the cached value."
  @spec measure() :: pos_integer()
  def measure do
    untraced = loop_ns(@calls)
    parent = self()
    ref = make_ref()

    sink =
      spawn(fn ->
        receive do
          {^ref, :drain} -> send(parent, {ref, drain(0, System.monotonic_time(:nanosecond))})
        end
      end)

    mfa = {__MODULE__, :probe, 1}
    :erlang.trace_pattern(mfa, true, [{:meta, sink}])

    traced =
      try do
        loop_ns(@calls)
      after
        :erlang.trace_pattern(mfa, false, [:meta])
      end

    send(sink, {ref, :drain})

    sink_ns =
      receive do
        {^ref, ns} -> ns
      after
        5_000 -> 0
      end

    max(div(traced - untraced + sink_ns, @calls), 100)
  end

  defp loop_ns(n) do
    t0 = System.monotonic_time(:nanosecond)
    loop(n, 0)
    System.monotonic_time(:nanosecond) - t0
  end

  defp loop(0, acc), do: acc
  defp loop(n, acc), do: loop(n - 1, __MODULE__.probe(acc))

  defp drain(n, t0) do
    receive do
      {:trace_ts, _, _, _, _} -> drain(n + 1, t0)
      {:trace, _, _, _} -> drain(n + 1, t0)
    after
      0 -> System.monotonic_time(:nanosecond) - t0
    end
  end
end
