defmodule ClusterScope.Trace.ControlWord do
  @moduledoc """
  One bit of the node's trace control word per function-pattern session.

  A session's match spec carries the guard `get_tcw() band Bit == 0`, so
  setting its bit (`:erlang.system_flag(:trace_control_word, _)`: O(1), no
  code barrier) stops the VM producing that session's events at once, while
  switching the pattern itself off takes a code barrier (5-10 ms on a busy
  node) during which a hot function would flood the tracer. The tracer sets
  its bit first and removes the pattern after; it switches the pattern on
  with the bit set and clears the bit last.

  The word is shared by the whole node, so its read-modify-writes go
  through this server, and a bit is released when its owner exits. Only
  ClusterScope's bits are touched (32 of them; a session that finds none
  free runs without one and relies on switching its pattern alone).
  """

  use GenServer

  import Bitwise

  @bits 32

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "A free bit for the caller (released when it exits), or `nil`."
  @spec acquire() :: pos_integer() | nil
  def acquire, do: GenServer.call(__MODULE__, {:acquire, self()})

  @doc "Sets (pause) or clears (run) a bit of the trace control word."
  @spec put(pos_integer(), boolean()) :: :ok
  def put(bit, set?), do: GenServer.call(__MODULE__, {:put, bit, set?})

  @doc "Releases a bit (clearing it)."
  @spec release(pos_integer()) :: :ok
  def release(bit), do: GenServer.call(__MODULE__, {:release, bit})

  @impl true
  def init(_opts), do: {:ok, %{owners: %{}, monitors: %{}}}

  @impl true
  def handle_call({:acquire, pid}, _from, state) do
    case Enum.find(0..(@bits - 1), &(not Map.has_key?(state.owners, 1 <<< &1))) do
      nil ->
        {:reply, nil, state}

      i ->
        bit = 1 <<< i
        ref = Process.monitor(pid)
        write(bit, false)

        {:reply, bit,
         %{
           state
           | owners: Map.put(state.owners, bit, ref),
             monitors: Map.put(state.monitors, ref, bit)
         }}
    end
  end

  def handle_call({:put, bit, set?}, _from, state) do
    if Map.has_key?(state.owners, bit), do: write(bit, set?)
    {:reply, :ok, state}
  end

  def handle_call({:release, bit}, _from, state), do: {:reply, :ok, free(state, bit)}

  @impl true
  def handle_info({:DOWN, ref, :process, _, _}, state) do
    case state.monitors do
      %{^ref => bit} -> {:noreply, free(state, bit)}
      _ -> {:noreply, state}
    end
  end

  defp free(state, bit) do
    case state.owners do
      %{^bit => ref} ->
        Process.demonitor(ref, [:flush])
        write(bit, false)

        %{
          state
          | owners: Map.delete(state.owners, bit),
            monitors: Map.delete(state.monitors, ref)
        }

      _ ->
        state
    end
  end

  defp write(bit, set?) do
    word = :erlang.system_info(:trace_control_word)
    new = if set?, do: word ||| bit, else: word &&& bnot(bit) &&& 0xFFFFFFFF
    :erlang.system_flag(:trace_control_word, new)
  end
end
