defmodule ClusterScope.Trace.TracerSwitchTest do
  # The throttled steady state on this node: once a window's budget is spent
  # the VM is told to stop (the session's bit set) and the breakpoint is
  # gone; the next window puts it back. Switching runs at high priority,
  # events at normal priority.
  use ExUnit.Case, async: false

  import Bitwise

  alias ClusterScope.Trace
  alias ClusterScope.Trace.{ControlWord, Sessions}

  @mfa {TestApp.Work, :step, 1}

  setup do
    {:ok, s} =
      Trace.start(%{
        module: "TestApp.Work",
        function: "step",
        arity: "1",
        rate: 100,
        max_events: 1_000_000,
        # The steady state, not the overload stop: on a loaded host the
        # tracer can start late while the driver, on the other scheduler,
        # queues thousands of events before the first mailbox check.
        max_queue: 1_000_000,
        duration_ms: 60_000,
        nodes: [node()]
      })

    {:ok, %{tracers: %{} = tracers}} = Sessions.get(s.id)
    tracer = Map.fetch!(tracers, node())

    on_exit(fn -> Trace.stop(s.id) end)
    %{id: s.id, tracer: tracer}
  end

  defp drive(ms), do: Task.async(fn -> TestApp.Work.drive_for(ms) end)

  defp await(fun, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      case fun.() do
        nil ->
          if System.monotonic_time(:millisecond) > deadline, do: flunk("timed out"), else: nil

        value ->
          value
      end
    end)
    |> Enum.find(&(&1 != nil))
  end

  test "a spent budget removes the breakpoint and sets the session's bit; the next window restores them",
       ctx do
    # Running: the pattern is on with the bit clear.
    assert :erlang.trace_info(@mfa, :meta) == {:meta, ctx.tracer}
    %{bit: bit} = :sys.get_state(ctx.tracer)
    assert is_integer(bit) and (:erlang.system_info(:trace_control_word) &&& bit) == 0

    driver = drive(2_500)

    # Paused (a window's budget of 100 spent within the first milliseconds):
    # the tracer has switched everything off before it says so.
    await(fn -> if :sys.get_state(ctx.tracer).status == :paused, do: true end)
    assert :erlang.trace_info(@mfa, :meta) == {:meta, false}
    assert (:erlang.system_info(:trace_control_word) &&& bit) == bit

    calls = Task.await(driver, 10_000)
    {:ok, s} = Trace.get(ctx.id)
    st = s.per_node[node()]

    # The next windows switched it back on (and off again): 100 events each.
    assert st.pauses >= 2
    assert st.kept >= 200 and st.kept <= 100 * 2.5 + 100
    # Between the windows the VM produced nothing: far fewer events than calls.
    assert st.seen < calls / 100
  end

  test "switching runs at high priority and events at normal; the control-word server is high",
       ctx do
    assert Process.info(Process.whereis(ControlWord), :priority) == {:priority, :high}
    assert Process.info(ctx.tracer, :priority) == {:priority, :normal}

    # Every priority change the tracer makes.
    :erlang.trace_pattern({:erlang, :process_flag, 2}, [{[:priority, :_], [], []}])
    :erlang.trace(ctx.tracer, true, [:call, {:tracer, self()}])

    try do
      Task.await(drive(1_500), 10_000)
    after
      :erlang.trace(ctx.tracer, false, [:call])
      :erlang.trace_pattern({:erlang, :process_flag, 2}, false)
    end

    changes = collect([])
    # A pause and a resume at least, each raised then restored.
    assert length(changes) >= 4
    assert rem(length(changes), 2) == 0

    for [raise, restore] <- Enum.chunk_every(changes, 2) do
      assert raise == {:call, :high}
      assert restore == {:call, :normal}
    end

    assert Process.info(ctx.tracer, :priority) == {:priority, :normal}
  end

  defp collect(acc) do
    receive do
      {:trace, _, :call, {:erlang, :process_flag, [:priority, level]}} ->
        collect([{:call, level} | acc])
    after
      200 -> Enum.reverse(acc)
    end
  end
end
