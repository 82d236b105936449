defmodule ClusterScope.Health.CLITest do
  # `mix cluster_scope.health`: its exit codes and output, in-process.
  use ExUnit.Case, async: false

  alias ClusterScope.Health
  alias ClusterScope.Health.CLI
  alias ClusterScope.LocalCluster

  setup do
    # Peers of earlier tests, still known here as down or cut off, would
    # make the cluster's health degraded or critical whatever the test sets.
    ClusterScope.Test.Cluster.forget_gone()
    # Alerts left by an earlier test clear with the default thresholds; a
    # connectivity alert once the classification is healthy again, after
    # clear_after_samples samples under its line.
    Health.reset_alert_thresholds()

    settled =
      ClusterScope.Test.Cluster.poll(System.monotonic_time(:millisecond) + 15_000, fn ->
        Health.sample_now()

        ClusterScope.Cluster.State.topology().classification.status == :healthy and
          not Enum.any?(ClusterScope.Health.Monitor.alerts(), &(&1.metric == :connectivity))
      end)

    assert settled, "the cluster did not settle as healthy: #{inspect(Health.Monitor.alerts())}"
    on_exit(fn -> Health.reset_alert_thresholds() end)
    :ok
  end

  defp run(args) do
    {code, out} = CLI.main(args)
    {code, IO.iodata_to_binary(out)}
  end

  defp count, do: :erlang.system_info(:process_count)

  test "1 with a warning alert, with its message and remediation" do
    {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count(), 2)}})
    Health.sample_now()

    assert {1, out} = run([])
    assert out =~ "Cluster health: DEGRADED"
    assert out =~ "[warning] #{node()} process_count"
    assert out =~ "->"
    assert out =~ Atom.to_string(node())
  end

  test "2 with a critical alert; --json has the operation's data" do
    {:ok, _} = Health.set_alert_thresholds(%{process_count: %{critical: div(count(), 2)}})
    Health.sample_now()

    assert {2, out} = run([])
    assert out =~ "Cluster health: CRITICAL"
    assert out =~ "[critical]"

    assert {2, json} = run(["--json"])
    assert {:ok, %{"data" => data, "metadata" => meta}} = ClusterScope.JSON.decode(json)
    assert data["status"] == "critical" and data["worst_alert_severity"] == "critical"
    assert meta["operation"] == "cluster_health"
  end

  test "3 on usage errors and unreachable nodes; --help is 0" do
    assert {3, out} = run(["--bogus"])
    assert out =~ "Usage: mix cluster_scope.health"
    assert {3, _} = run(["extra"])
    assert {0, out} = run(["--help"])
    assert out =~ "Exit status"
    assert {3, out} = run(["--node", "nobody@127.0.0.1"])
    assert out =~ "UNKNOWN: Could not connect"
  end

  @tag :cluster
  test "0, 1 and 2 on a node of its own" do
    # A peer alone (not connected to this node or any other): its health is
    # only its own, whatever the test node went through before.
    {:ok, peer} =
      LocalCluster.start_peer(
        connection: :standard_io,
        link: true,
        app_env: [{:cluster_scope, :health_interval_ms, 100}]
      )

    on_exit(fn -> LocalCluster.stop(peer) end)
    call = fn m, f, a -> LocalCluster.call(peer, m, f, a, 10_000) end

    main = fn args ->
      call.(CLI, :main, [args]) |> then(fn {c, o} -> {c, IO.iodata_to_binary(o)} end)
    end

    # Boot load (code loading) must not make the test flaky: utilisation and
    # run queue are not what is tested here.
    {:ok, _} =
      call.(Health, :set_alert_thresholds, [
        %{
          scheduler_utilization_pct: %{warning: nil},
          run_queue_per_scheduler: %{warning: nil, critical: nil}
        }
      ])

    call.(Health, :sample_now, [])
    assert {0, out} = main.([])
    assert out =~ "Cluster health: HEALTHY"
    assert out =~ "No active alerts."

    peer_count = call.(:erlang, :system_info, [:process_count])

    {:ok, _} =
      call.(Health, :set_alert_thresholds, [%{process_count: %{warning: div(peer_count, 2)}}])

    call.(Health, :sample_now, [])
    assert {1, out} = main.([])
    assert out =~ "[warning] #{peer.node} process_count"

    {:ok, _} =
      call.(Health, :set_alert_thresholds, [%{process_count: %{critical: div(peer_count, 3) * 2}}])

    call.(Health, :sample_now, [])
    assert {2, out} = main.(["--json"])
    assert {:ok, %{"data" => %{"status" => "critical"}}} = ClusterScope.JSON.decode(out)
  end
end
