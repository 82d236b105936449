defmodule ClusterScope.Health.BackgroundTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Health.{Background, Reading}

  @opts %{throttled: false, horde?: false, parent: nil}

  test "a due scan runs in a low-priority process and its result is recorded and paced" do
    c = Background.start(Background.new(), %{@opts | parent: self()})
    assert {pid, _ref, _at} = c.running
    assert Process.info(pid, :priority) in [{:priority, :low}, nil]
    assert Background.running?(c, pid)

    assert_receive {:collected, ^pid, result}, 5_000
    assert result.queues.scanned > 0
    assert result.horde == nil

    c = Background.done(c, result, 1_000, 0.01, 42)
    assert c.running == nil
    assert %{status: :ok, scanned: scanned, finished_at_ms: 42} = c.last
    assert scanned == result.queues.scanned
    assert c.period >= 1_000
    assert c.due_at > System.monotonic_time(:millisecond)
    assert is_float(Background.fraction(c))
  end

  test "no scan while throttled, while one runs, or before it is due" do
    c = Background.new()
    assert Background.start(c, %{@opts | throttled: true, parent: self()}).running == nil

    later = %{c | due_at: System.monotonic_time(:millisecond) + 60_000}
    assert Background.start(later, %{@opts | parent: self()}).running == nil

    busy = %{c | running: {self(), make_ref(), 0}}
    assert Background.start(busy, %{@opts | parent: self()}) == busy
  end

  test "a scan past its deadline is killed and reported incomplete, keeping the last counts" do
    pid = spawn(fn -> Process.sleep(:infinity) end)
    ref = Process.monitor(pid)
    started = System.monotonic_time(:millisecond) - 10_000
    c = %{Background.new() | running: {pid, ref, started}, last: %{scanned: 7, cost_us: 9}}

    assert Background.check_deadline(c, 60_000, 1_000, 1) == c

    c = Background.check_deadline(c, 5_000, 1_000, 1)
    refute Process.alive?(pid)
    assert c.running == nil
    assert %{status: :incomplete, scanned: 7, cost_us: 9, error: error} = c.last
    assert error =~ "5000 ms"
  end

  test "a crashed scan's error is kept with the previous counts; stop without a scan is a no-op" do
    c = %{Background.new() | last: %{status: :ok, scanned: 3, reductions: 5}}
    c = Background.stopped(c, %{status: :error, error: "boom"}, 500)
    assert %{status: :error, error: "boom", scanned: 3, reductions: 5} = c.last
    assert Background.stop(c) == c
  end

  test "the sample's message_queues section and max_queue" do
    c = Background.new()
    assert Background.message_queues(c, [], false).status == :pending
    assert Background.message_queues(c, [], true).status == :throttled
    assert Background.max_queue(c, []) == nil

    c = %{c | last: %{status: :ok, scanned: 10}}
    top = [%{message_queue_len: 12, local_pid: self(), pid: "x"}]
    section = Background.message_queues(c, top, false)
    assert section.status == :ok and section.processes_scanned == 10
    assert section.top == [%{message_queue_len: 12, pid: "x"}]
    assert Background.max_queue(c, top) == 12
    assert Background.max_queue(c, []) == 0

    status = Background.status(c, false, true, 2_000)
    assert status.message_queues.period_ms == 2_000 and status.horde_skew == :enabled
    assert Background.status(c, true, false, 2_000).message_queues.status == :throttled
  end

  test "a reading's rates are over the time since the previous one; values are flat" do
    prev = Reading.initial()
    Process.sleep(20)
    {reading, next} = Reading.take(prev, nil, System.monotonic_time(:microsecond))
    assert is_integer(reading.reductions_per_s) and reading.reductions_per_s > 0
    assert next.reductions >= prev.reductions

    {first, _} = Reading.take(%{prev | reductions: nil}, nil, System.monotonic_time(:microsecond))
    assert first.reductions_per_s == nil

    values = Reading.values(reading, 4, %{events: 2})
    assert values.max_message_queue_len == 4 and values.busy_dist_port_events == 2
    assert values.process_count == reading.limits.process_count
    assert Enum.all?(Map.values(values), &(is_number(&1) or is_nil(&1)))
  end
end
