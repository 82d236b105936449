defmodule ClusterScope.Health.SystemMonitorTest do
  # The system monitor slot is one per VM and the health monitor holds it in
  # the running application: it is stopped (which frees the slot) for each
  # test and restarted after, so it never sees the slot change under it.
  use ExUnit.Case, async: false

  alias ClusterScope.Health.{Monitor, SystemMonitor}

  setup do
    :ok = Supervisor.terminate_child(ClusterScope.Supervisor, Monitor)

    on_exit(fn ->
      :erlang.system_monitor(:undefined)

      if Process.whereis(Monitor) == nil,
        do: Supervisor.restart_child(ClusterScope.Supervisor, Monitor)
    end)

    assert :erlang.system_monitor() == :undefined
    :ok
  end

  test "installs into a free slot, reads events, uninstalls" do
    assert SystemMonitor.install(self()) == :installed
    assert {me, opts} = :erlang.system_monitor()
    assert me == self() and :busy_dist_port in opts

    assert SystemMonitor.read(:installed, 3, self()) ==
             {:installed, %{status: :installed, events: 3}}

    assert SystemMonitor.status(:installed) == %{status: :installed}
    assert SystemMonitor.uninstall(:installed, self()) == :ok
    assert :erlang.system_monitor() == :undefined
  end

  test "never replaces another system monitor" do
    other = spawn(fn -> Process.sleep(:infinity) end)
    :erlang.system_monitor(other, [:busy_port])
    assert {:unavailable, reason} = SystemMonitor.install(self())
    assert reason =~ "another system monitor is installed"
    assert {^other, [:busy_port]} = :erlang.system_monitor()
    # Uninstalling what we do not hold leaves it alone.
    SystemMonitor.uninstall({:unavailable, reason}, self())
    SystemMonitor.uninstall(:installed, self())
    assert {^other, _} = :erlang.system_monitor()
    Process.exit(other, :kill)
  end

  test "stops counting when another process takes the slot later" do
    assert SystemMonitor.install(self()) == :installed
    other = spawn(fn -> Process.sleep(:infinity) end)
    :erlang.system_monitor(other, [:busy_port])

    assert {{:unavailable, reason}, %{status: :unavailable, events: nil, reason: reason}} =
             SystemMonitor.read(:installed, 7, self())

    assert reason =~ "replaced ClusterScope's"
    assert SystemMonitor.status({:unavailable, reason}) == %{status: :unavailable, reason: reason}
    SystemMonitor.uninstall(:installed, self())
    assert {^other, _} = :erlang.system_monitor()
    Process.exit(other, :kill)
  end
end
