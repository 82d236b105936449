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

  describe "secrets" do
    @secret "s3cret-value-4f9a1b7c"

    defp rules, do: ClusterScope.Redact.rules(["password"], [@secret])

    test "arguments, results, exceptions and messages are redacted before they are printed" do
      me = self()

      for message <- [
            {:trace, me, :call, {TestApp.Work, :step, [@secret]}},
            {:trace, me, :return_from, {TestApp.Work, :step, 1}, {:ok, "Bearer " <> @secret}},
            {:trace, me, :exception_from, {TestApp.Work, :step, 1}, {:error, {:bad, @secret}}},
            {:trace, me, :send, {:login, String.to_charlist(@secret)}, me},
            {:trace, me, :receive, [password: "hunter2-plain"]},
            {:trace_ts, me, :call, {TestApp.Work, :step, [%{"Password" => "hunter2-plain"}]},
             {1, 2, 3}}
          ] do
        event = Event.from_trace(message, 1, rules())
        text = inspect(event)
        refute text =~ @secret
        refute text =~ "hunter2-plain"
        # A charlist prints as integers: not even its first characters show.
        refute text =~ @secret |> String.to_charlist() |> Enum.take(4) |> Enum.join(", ")
        assert Event.load(Event.store(message, 1, rules()), rules()) == event
      end
    end

    test "without rules given, this node's own secrets (its cookie) are used" do
      cookie = Atom.to_string(Node.get_cookie())
      event = Event.from_trace({:trace, self(), :call, {TestApp.Work, :step, [cookie]}}, 1)
      refute event.args =~ cookie
      assert event.args =~ "[REDACTED]"
    end

    test "a stored large message is redacted when it is formatted" do
      big = {:trace, self(), :receive, {String.duplicate("x", 10_000), @secret}}
      assert %{message: message} = Event.load(Event.store(big, 7, rules()), nil)
      refute message =~ @secret
      assert message =~ "[REDACTED]"
    end

    test "a secret in a long charlist or a long text is never shown in part" do
      long = ~c"-setcookie " ++ String.to_charlist(@secret) ++ List.duplicate(?a, 100_000)
      event = Event.from_trace({:trace, self(), :call, {TestApp.Work, :step, [long]}}, 1, rules())
      refute event.args =~ @secret |> String.to_charlist() |> Enum.take(3) |> Enum.join(", ")

      text = String.duplicate("y", 500) <> @secret <> String.duplicate("z", 100_000)
      event = Event.from_trace({:trace, self(), :call, {TestApp.Work, :step, [text]}}, 1, rules())
      refute event.args =~ String.slice(@secret, 0, 4)
    end

    test "huge and deep terms are cut to what is shown before redaction" do
      deep = Enum.reduce(1..100_000, @secret, fn _, acc -> [acc] end)
      wide = Map.new(1..100_000, &{&1, @secret})
      big_list = [@secret | Enum.to_list(1..1_000_000)]

      for term <- [deep, wide, big_list, List.to_tuple(big_list)] do
        {us, event} =
          :timer.tc(fn ->
            Event.from_trace({:trace, self(), :call, {TestApp.Work, :step, [term]}}, 1, rules())
          end)

        refute event.args =~ @secret
        assert byte_size(event.args) < 20_000
        # Bounded like the printing, whatever the size of the term.
        assert us < 2_000_000
      end
    end
  end
end
