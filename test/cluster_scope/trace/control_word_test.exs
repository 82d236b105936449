defmodule ClusterScope.Trace.ControlWordTest do
  use ExUnit.Case, async: false

  import Bitwise

  alias ClusterScope.Trace.ControlWord

  test "each owner gets its own bit, which follows put/2 and is cleared when the owner exits" do
    parent = self()

    owners =
      for _ <- 1..2 do
        spawn(fn ->
          bit = ControlWord.acquire()
          send(parent, {:bit, self(), bit})
          receive(do: (:exit -> :ok))
        end)
      end

    bits = for o <- owners, do: receive(do: ({:bit, ^o, bit} -> bit))
    [a, b] = bits
    assert a != b and a > 0 and b > 0

    # put/2 only touches bits that are owned.
    :ok = ControlWord.put(a, true)
    assert (:erlang.system_info(:trace_control_word) &&& a) == a
    assert (:erlang.system_info(:trace_control_word) &&& b) == 0
    :ok = ControlWord.put(a, false)
    assert (:erlang.system_info(:trace_control_word) &&& a) == 0

    :ok = ControlWord.put(b, true)
    [_, owner_b] = owners
    ref = Process.monitor(owner_b)
    send(owner_b, :exit)
    assert_receive {:DOWN, ^ref, _, _, _}
    _ = :sys.get_state(ControlWord)
    assert (:erlang.system_info(:trace_control_word) &&& b) == 0
    Enum.each(owners, &send(&1, :exit))
  end
end
