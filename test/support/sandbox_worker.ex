defmodule ClusterScope.Test.SandboxWorker do
  @moduledoc false
  # A sandbox child for tests and the sandbox bench: a GenServer that
  # answers :ping and :topology. `start_link({:fail_on, node})` refuses to
  # start on that node (for the all-or-nothing tests); `{:hang_on, node,
  # test_pid}` never returns from init there;
  # `:crash_soon` exits 10 ms after each start.
  use GenServer

  def start_link(arg \\ nil), do: GenServer.start_link(__MODULE__, arg)

  @impl true
  def init({:fail_on, node}) when node == node(), do: {:stop, :refused_here}

  def init({:hang_on, node, test}) when node == node() do
    send(test, {:hanging, self()})
    Process.sleep(:infinity)
  end

  def init(:crash_soon) do
    Process.send_after(self(), :crash, 10)
    {:ok, %{arg: :crash_soon, topology: nil}}
  end

  def init(arg), do: {:ok, %{arg: arg, topology: ClusterScope.Sandbox.topology()}}

  @impl true
  def handle_info(:crash, _state), do: exit(:crashed_on_purpose)

  @doc false
  # `n` busy loops on this node (for the least-loaded placement test).
  def spin(n), do: for(_ <- 1..n, do: spawn(fn -> loop(0) end))

  defp loop(i), do: loop(i + 1)

  @impl true
  def handle_call(:ping, _from, state), do: {:reply, :pong, state}
  def handle_call(:topology, _from, state), do: {:reply, state.topology, state}
end
