defmodule ClusterScope.Trace.ControlWordTest do
  use ExUnit.Case, async: false

  import Bitwise

  alias ClusterScope.Trace.ControlWord

  # A process that claims `mfa` and reports its answer.
  defp claimer(mfa) do
    parent = self()

    pid =
      spawn(fn ->
        send(parent, {:claimed, self(), ControlWord.acquire(mfa)})
        receive(do: (:exit -> :ok))
      end)

    receive do
      {:claimed, ^pid, answer} -> {pid, answer}
    end
  end

  defp stop(pid) do
    ref = Process.monitor(pid)
    send(pid, :exit)
    assert_receive {:DOWN, ^ref, _, _, _}
    _ = :sys.get_state(ControlWord)
  end

  defp word, do: :erlang.system_info(:trace_control_word)

  test "each claim gets its own bit, which follows put/2 and is cleared when its owner exits" do
    {a_pid, {:ok, a}} = claimer({TestApp.Work, :step, 1})
    {b_pid, {:ok, b}} = claimer({TestApp.Echo, :init, 1})
    assert a != b and a > 0 and b > 0

    :ok = ControlWord.put(a, true)
    assert (word() &&& a) == a
    assert (word() &&& b) == 0
    :ok = ControlWord.put(a, false)
    assert (word() &&& a) == 0

    :ok = ControlWord.put(b, true)
    stop(b_pid)
    assert (word() &&& b) == 0
    # A bit no one owns any more is not touched.
    :ok = ControlWord.put(b, true)
    assert (word() &&& b) == 0
    stop(a_pid)
  end

  test "overlapping patterns are refused until the first claim is released" do
    {first, {:ok, _}} = claimer({TestApp.Work, :step, 1})
    assert {_, {:error, {:conflict, text}}} = claimer({TestApp.Work, :_, :_})
    assert text =~ "overlaps TestApp.Work.step/1"
    assert {_, {:error, {:conflict, _}}} = claimer({TestApp.Work, :step, :_})
    {other, {:ok, _}} = claimer({TestApp.Work, :drive, 1})
    stop(first)
    {again, {:ok, _}} = claimer({TestApp.Work, :step, :_})
    stop(other)
    stop(again)
  end
end
