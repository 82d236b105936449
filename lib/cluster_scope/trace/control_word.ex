defmodule ClusterScope.Trace.ControlWord do
  @moduledoc """
  The node's claims on function patterns, and one bit of the node's trace
  control word per function-pattern session.

  A session's match spec carries the guard `get_tcw() band Bit == 0`, so
  setting its bit (`:erlang.system_flag(:trace_control_word, _)`: O(1), no
  code barrier) stops the VM producing that session's events at once, while
  switching the pattern itself off takes a code barrier (5-10 ms on a busy
  node) during which a hot function would flood the tracer. The tracer sets
  its bit first and removes the pattern after; it switches the pattern on
  with the bit set and clears the bit last.

  A meta pattern belongs to one tracer: two sessions whose patterns overlap
  (`M.f/2` and `M._/_`, say) would switch each other's off, so the second is
  refused. The word is shared by the whole node, so its read-modify-writes go
  through this server. A claim and its bit are released when the tracer
  calls `release/0` or exits. Only ClusterScope's bits are touched (32 of
  them; a session that finds none free runs without one and relies on
  switching its pattern alone).
  """

  use GenServer

  import Bitwise

  @bits 32

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Claims `mfa` for the caller and gives it a free bit: `{:ok, bit | nil}`,
  or `{:error, {:conflict, text}}` when a live session's pattern overlaps.
  """
  @spec acquire({module(), atom(), non_neg_integer() | :_}) ::
          {:ok, pos_integer() | nil} | {:error, {:conflict, String.t()}}
  def acquire(mfa), do: GenServer.call(__MODULE__, {:acquire, self(), mfa})

  @doc "Sets (pause) or clears (run) a bit of the trace control word."
  @spec put(pos_integer(), boolean()) :: :ok
  def put(bit, set?), do: GenServer.call(__MODULE__, {:put, bit, set?})

  @doc "Releases the caller's claim and bit (clearing the bit)."
  @spec release() :: :ok
  def release, do: GenServer.call(__MODULE__, {:release, self()})

  @impl true
  def init(_opts) do
    # A tracer waits for this server between the budget being spent and the
    # VM being told to stop (and again when it starts the next window): at
    # normal priority that wait is a time slice of the traced code on a busy
    # scheduler. Every request is small (32 bits, at most one claim per
    # tracer, 64 tracers a node) and only tracers call it, so it can never
    # hold a scheduler.
    Process.flag(:priority, :high)
    {:ok, %{owners: %{}, monitors: %{}, claims: %{}}}
  end

  @impl true
  def handle_call({:acquire, pid, mfa}, _from, state) do
    case Enum.find(state.claims, fn {_, claim} -> overlap?(claim.mfa, mfa) end) do
      {other, claim} ->
        text =
          "#{format(mfa)} overlaps #{format(claim.mfa)}, traced by the session tracer " <>
            "#{inspect(other)} on #{node()}"

        {:reply, {:error, {:conflict, text}}, state}

      nil ->
        ref = Process.monitor(pid)
        free_bit = Enum.find(0..(@bits - 1), &(not Map.has_key?(state.owners, 1 <<< &1)))
        bit = if free_bit, do: 1 <<< free_bit
        if bit, do: write(bit, false)

        state = %{
          state
          | owners: if(bit, do: Map.put(state.owners, bit, pid), else: state.owners),
            monitors: Map.put(state.monitors, ref, pid),
            claims: Map.put(state.claims, pid, %{mfa: mfa, bit: bit, ref: ref})
        }

        {:reply, {:ok, bit}, state}
    end
  end

  def handle_call({:put, bit, set?}, _from, state) do
    if Map.has_key?(state.owners, bit), do: write(bit, set?)
    {:reply, :ok, state}
  end

  def handle_call({:release, pid}, _from, state), do: {:reply, :ok, free(state, pid)}

  @impl true
  def handle_info({:DOWN, ref, :process, _, _}, state) do
    case state.monitors do
      %{^ref => pid} -> {:noreply, free(state, pid)}
      _ -> {:noreply, state}
    end
  end

  defp free(state, pid) do
    case state.claims do
      %{^pid => %{bit: bit, ref: ref}} ->
        Process.demonitor(ref, [:flush])
        if bit, do: write(bit, false)

        %{
          state
          | owners: Map.delete(state.owners, bit),
            monitors: Map.delete(state.monitors, ref),
            claims: Map.delete(state.claims, pid)
        }

      _ ->
        state
    end
  end

  defp overlap?({m, f1, a1}, {m, f2, a2}), do: same?(f1, f2) and same?(a1, a2)
  defp overlap?(_, _), do: false

  defp same?(x, y), do: x == y or x == :_ or y == :_

  defp format({m, f, a}), do: "#{inspect(m)}.#{f}/#{a}"

  defp write(bit, set?) do
    word = :erlang.system_info(:trace_control_word)
    new = if set?, do: word ||| bit, else: word &&& bnot(bit) &&& 0xFFFFFFFF
    :erlang.system_flag(:trace_control_word, new)
  end
end
