defmodule ClusterScope.Resilience.SelfFailureTest do
  # Requirement 10: every ClusterScope process killed under load comes back,
  # and the critical state (event history, subscriptions, thresholds and
  # active alerts, trace sessions, sandboxes, host operations, latency) is
  # still there. Run on a real peer, so the test node's own ClusterScope is
  # not the one being killed.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 300_000

  setup do
    peers = Cluster.start(2)
    on_exit(fn -> Cluster.cleanup(peers) end)
    [a, b] = peers

    Cluster.await_run(
      a,
      "cluster_topology",
      &(&1.classification.status == :healthy and length(&1.agents) == 2),
      15_000
    )

    %{a: a, b: b}
  end

  defp call(peer, m, f, args, timeout \\ 10_000), do: Cluster.call(peer, m, f, args, timeout)

  defp children(peer) do
    for {id, pid, _, _} <- call(peer, Supervisor, :which_children, [ClusterScope.Supervisor]),
        is_pid(pid),
        do: {id, pid}
  end

  defp sandbox_running(peer, id) do
    case call(peer, ClusterScope, :run, ["get_sandbox_info", %{id: id}]) do
      {:ok, info} ->
        running = info.nodes |> Map.values() |> Enum.map(& &1.running) |> Enum.sum()

        {:ok, %{running: running}}

      other ->
        other
    end
  end

  defp kill_and_wait(peer, id) do
    {^id, pid} = Enum.find(children(peer), &(elem(&1, 0) == id))
    true = call(peer, Process, :exit, [pid, :kill])

    Cluster.poll(System.monotonic_time(:millisecond) + 10_000, fn ->
      case Enum.find(children(peer), &(elem(&1, 0) == id)) do
        {^id, new} when new != pid -> true
        _ -> false
      end
    end)
  end

  test "each ClusterScope process killed under load comes back with its state", %{a: a, b: b} do
    # Load: a stream of operations from b against a.
    load = call(b, ClusterScope.Test.Load, :start, [a.node])
    on_exit(fn -> call(b, ClusterScope.Test.Load, :stop, [load]) end)

    # State worth keeping.
    {:ok, _} =
      call(a, ClusterScope.Health, :set_alert_thresholds, [
        %{process_usage_pct: %{warning: 0.0001, critical: nil}}
      ])

    Cluster.poll(System.monotonic_time(:millisecond) + 10_000, fn ->
      match?({:ok, [_ | _]}, call(a, ClusterScope.Health, :local_alerts, []))
    end)

    subscriber = call(a, ClusterScope.Test.Inbox, :start, [])
    :ok = call(a, ClusterScope.Cluster.State, :subscribe, [subscriber])
    :ok = call(a, ClusterScope.Health.Monitor, :subscribe, [subscriber])

    {:ok, session} =
      call(a, ClusterScope, :run, [
        "trace_process",
        %{
          process:
            ClusterScope.ProcessRef.to_string(call(a, ClusterScope.Test.Inbox, :start, [])),
          messages: "receive",
          duration_ms: 120_000,
          force: true
        }
      ])

    {:ok, _} = call(a, ClusterScope, :register_operation, [ClusterScope.TestOps.EchoV1])

    :ok = Cluster.put_config(a, :startable_modules, [ClusterScope.Test.SandboxWorker])

    {:ok, sandbox} =
      call(
        a,
        ClusterScope,
        :run,
        [
          "create_sandbox",
          %{
            "name" => "survivor",
            "nodes" => [to_string(a.node)],
            "children" => [%{"module" => "ClusterScope.Test.SandboxWorker", "count" => 3}]
          }
        ],
        30_000
      )

    # The configured endpoint (started by the application on a real host).
    :ok = Cluster.put_config(a, :http, enabled: true, port: 0)

    {:ok, _} =
      call(a, Supervisor, :restart_child, [
        ClusterScope.Supervisor,
        ClusterScope.Web.ConfiguredEndpoint
      ])
      |> then(fn
        {:error, :running} ->
          :ok =
            call(a, Supervisor, :terminate_child, [
              ClusterScope.Supervisor,
              ClusterScope.Web.ConfiguredEndpoint
            ])

          call(a, Supervisor, :restart_child, [
            ClusterScope.Supervisor,
            ClusterScope.Web.ConfiguredEndpoint
          ])

        other ->
          other
      end)

    endpoint_up? = fn ->
      case call(a, ClusterScope.Web.ConfiguredEndpoint, :current, []) do
        %{url: url} ->
          match?(
            {:ok, {{_, 200, _}, _, _}},
            :httpc.request(String.to_charlist(url <> "/api/v1/operations"))
          )

        nil ->
          false
      end
    end

    assert Cluster.poll(System.monotonic_time(:millisecond) + 5_000, endpoint_up?)
    last_event = Cluster.last_cluster_event(a)
    {alert_epoch, alert_seq} = call(a, ClusterScope.Web.StreamHub, :alerts_position, [])

    for id <- Enum.map(children(a), &elem(&1, 0)) -- [ClusterScope.StateKeeper] do
      assert kill_and_wait(a, id), "#{inspect(id)} did not come back"
      # What a kill breaks may show a moment later (a monitor firing).
      Process.sleep(200)

      # Still answering, with its state.
      assert {:ok, %{events: _}} = call(a, ClusterScope, :run, ["cluster_events", %{since: 0}])

      assert Cluster.last_cluster_event(a) >= last_event,
             "event history lost after killing #{inspect(id)}"

      assert %{metrics: %{process_usage_pct: %{warning: w}}} =
               call(a, ClusterScope.Health.Monitor, :thresholds, [])

      assert w == 0.0001, "thresholds lost after killing #{inspect(id)}"
      assert {:ok, [_ | _]} = call(a, ClusterScope.Health, :local_alerts, [])

      assert {:ok, _} = call(a, ClusterScope.Trace, :get, [session.id]),
             "trace session lost after killing #{inspect(id)}"

      assert {:ok, _} = call(a, ClusterScope, :run, ["test_echo", %{text: "x"}]),
             "host operation lost after killing #{inspect(id)}"

      assert Cluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
               a.node in call(b, ClusterScope.Cluster.Heartbeat, :agent_nodes, [])
             end),
             "#{a.node} no longer an agent after killing #{inspect(id)}"

      assert {:ok, %{running: 3}} = sandbox_running(a, sandbox.id),
             "sandbox lost after killing #{inspect(id)}"

      # The live streams' alert history: same epoch, nothing renumbered.
      assert {^alert_epoch, seq} = call(a, ClusterScope.Web.StreamHub, :alerts_position, []),
             "alert history lost after killing #{inspect(id)}"

      assert seq >= alert_seq

      assert Cluster.poll(System.monotonic_time(:millisecond) + 5_000, endpoint_up?),
             "the configured endpoint did not come back after killing #{inspect(id)}"
    end

    # The keeper itself: killed, restarted, and heir again of the tables
    # their owners kept meanwhile, so the next owner crash still loses nothing.
    assert kill_and_wait(a, ClusterScope.StateKeeper)
    Process.sleep(200)
    assert kill_and_wait(a, ClusterScope.Cluster.State)
    assert kill_and_wait(a, ClusterScope.Health.Monitor)
    assert Cluster.last_cluster_event(a) >= last_event

    assert %{metrics: %{process_usage_pct: %{warning: 0.0001}}} =
             call(a, ClusterScope.Health.Monitor, :thresholds, [])

    # Subscriptions survived: an event after all the kills still arrives.
    :ok =
      call(a, ClusterScope.Cluster.State, :sandbox_event, [
        :sandbox_created,
        nil,
        "test event",
        %{}
      ])

    assert Cluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
             Enum.any?(
               call(a, ClusterScope.Test.Inbox, :messages, [subscriber]),
               &match?({:cluster_scope, :cluster, %{cause: "test event"}}, &1)
             )
           end)

    # The trace session still runs on its tracer.
    {:ok, s} = call(a, ClusterScope.Trace, :get, [session.id])
    assert s.ended == %{}, inspect(s.ended)
  end
end
