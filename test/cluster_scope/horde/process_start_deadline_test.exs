defmodule ClusterScope.Horde.ProcessStartDeadlineTest do
  # Real Horde 0.10 in the test VM (ERL_LIBS=/tmp/3p/lib): a start may take
  # as long as the timeout_ms the request allows (up to 30 s): the
  # operation's own deadline must not cut it first and answer a timeout
  # while Horde goes on to start the child (the client then retries and
  # starts it twice, without knowing where the first one runs).
  use ExUnit.Case, async: false

  @moduletag :horde

  @supervisor ClusterScope.Test.DeadlineSup

  setup do
    {:ok, _} = Application.ensure_all_started(:horde)
    previous = Application.fetch_env(:cluster_scope, :startable_modules)
    Application.put_env(:cluster_scope, :startable_modules, [Agent])
    ClusterScope.Config.load()
    parent = self()

    holder =
      spawn(fn ->
        {:ok, sup} =
          apply(Horde.DynamicSupervisor, :start_link, [
            [name: @supervisor, strategy: :one_for_one]
          ])

        send(parent, {:sup, sup})
        Process.sleep(:infinity)
      end)

    assert_receive {:sup, sup}, 10_000

    on_exit(fn ->
      case previous do
        {:ok, value} -> Application.put_env(:cluster_scope, :startable_modules, value)
        :error -> Application.delete_env(:cluster_scope, :startable_modules)
      end

      ClusterScope.Config.load()
      Process.unlink(holder)
      if Process.alive?(sup), do: Supervisor.stop(sup)
      Process.exit(holder, :kill)
    end)
  end

  test "a start slower than the default operation deadline but within timeout_ms answers where it started" do
    slow = ClusterScope.Config.get(:node_timeout_ms) + 2_500

    params = %{
      "supervisor" => inspect(@supervisor),
      "module" => "Agent",
      "args" => [%{"$atom" => "timer"}, %{"$atom" => "sleep"}, [slow]],
      "strategy" => "local",
      "timeout_ms" => slow + 3_000
    }

    assert {:ok, started} = ClusterScope.run("horde_process_start", params)
    assert started.node == node() and started.strategy == :local
  end
end
