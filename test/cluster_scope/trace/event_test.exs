defmodule ClusterScope.Trace.EventTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Trace.Event

  test "trace messages become events with their node, pid text and kind" do
    me = self()
    text = ClusterScope.ProcessRef.to_string(me)
    ts = {1_700, 0, 5}

    call = Event.from_trace({:trace, me, :call, {TestApp.Work, :step, [41]}}, 1)
    assert %{kind: "call", mfa: "TestApp.Work.step/1", args: "[41]", pid: ^text} = call
    assert call.node == Atom.to_string(node())

    ret = {:trace_ts, me, :return_from, {TestApp.Work, :step, 1}, 42, ts}
    assert Event.ts_us(ret) == 1_700_000_000_000_005
    assert %{kind: "return", result: "42"} = Event.from_trace(ret, Event.ts_us(ret))

    assert %{kind: "send", to: ^text, message: ":hi"} =
             Event.from_trace({:trace, me, :send, :hi, me}, 1)

    assert %{kind: "receive", message: "{:ok, 1}"} =
             Event.from_trace({:trace, me, :receive, {:ok, 1}}, 1)
  end

  test "stored events load back; large ones are formatted at once, bounded" do
    small = {:trace, self(), :receive, {:ok, 1}}
    assert Event.load(Event.store(small, 7)) == Event.from_trace(small, 7)

    big = {:trace, self(), :receive, Enum.to_list(1..100_000)}
    stored = Event.store(big, 7)
    assert byte_size(stored) < 2_000
    assert %{kind: "receive", message: message} = Event.load(stored)
    assert message =~ "..."
    assert Event.load("not an event") == nil
  end
end
