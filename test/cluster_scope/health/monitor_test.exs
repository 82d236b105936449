defmodule ClusterScope.Health.MonitorTest do
  # The health monitor of this node: samples, alerts with hysteresis,
  # subscribers, thresholds, baselines, self-protection, the system monitor
  # slot and the message queue scan.
  use ExUnit.Case, async: false

  alias ClusterScope.Health
  alias ClusterScope.Health.{Alerts, Monitor, Thresholds}
  alias ClusterScope.Test.Cluster

  setup do
    # Alerts left by an earlier test clear at the first sample with the
    # default thresholds.
    Health.reset_alert_thresholds()
    Health.sample_now()

    on_exit(fn ->
      Health.reset_alert_thresholds()
      Health.configure_sampling(:defaults)
    end)

    :ok
  end

  defp await(fun, timeout, message) do
    deadline = System.monotonic_time(:millisecond) + timeout
    Cluster.poll(deadline, fun) || flunk(message.())
  end

  defp active(metric), do: Enum.filter(Health.alerts(), &(&1.metric == metric))

  describe "samples" do
    @tag :no_horde
    test "a sample has every section, JSON-ready" do
      sample = Health.sample_now()

      for key <- [
            :memory,
            :limits,
            :schedulers,
            :reductions_per_s,
            :message_queues,
            :busy_dist_port,
            :connectivity,
            :values,
            :anomalies,
            :cost
          ] do
        assert Map.has_key?(sample, key), "missing #{key}"
      end

      assert sample.node == node()
      assert sample.memory.total_bytes > 0 and sample.memory.ets_bytes > 0
      assert sample.limits.process_count > 0 and sample.limits.process_limit > 0
      assert sample.limits.atom_count > 0 and sample.limits.port_limit > 0
      assert length(sample.schedulers.run_queue_lengths) == :erlang.system_info(:schedulers)
      assert is_float(sample.schedulers.utilization_pct)
      assert sample.schedulers.utilization_pct >= 0 and sample.schedulers.utilization_pct <= 100
      assert is_integer(sample.reductions_per_s) and sample.reductions_per_s > 0
      assert sample.connectivity.level in [0, 1, 2]
      assert is_integer(sample.cost.wall_us) and sample.cost.reductions > 0
      # No Horde here: the section is absent, not empty.
      refute Map.has_key?(sample, :horde)
      refute Map.has_key?(sample.values, :horde_skew)
      assert {:ok, _} = ClusterScope.JSON.encode(sample)
      assert {:ok, _} = ClusterScope.JSON.encode(Health.status())
    end

    test "samples are kept bounded (the last 120)" do
      for _ <- 1..125, do: Health.sample_now()
      samples = Health.samples()
      assert length(samples) == 120
      assert Enum.map(samples, & &1.at_ms) == Enum.sort(Enum.map(samples, & &1.at_ms))
    end

    test "the periodic samples follow the configured interval" do
      {:ok, %{interval_ms: 100}} = Health.configure_sampling(interval_ms: 100)
      taken = Health.status().samples_taken

      await(fn -> Health.status().samples_taken >= taken + 5 end, 3_000, fn ->
        "fewer than 5 samples in 3 s at 100 ms: #{inspect(Health.status())}"
      end)
    end
  end

  describe "alerts" do
    test "a crossed threshold raises an alert within one sample and clears with hysteresis" do
      Health.subscribe_to_alerts()
      count = :erlang.system_info(:process_count)
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})

      # The very next sample raises it.
      Health.sample_now()
      assert [alert] = active(:process_count)
      assert alert.severity == :warning and alert.node == node()
      assert alert.threshold == div(count, 2) and alert.value > alert.threshold
      assert alert.message =~ "processes"
      assert [_ | _] = alert.remediation
      assert is_integer(alert.started_at_ms) and is_binary(alert.id)
      assert_received {:cluster_scope, :alert, :raised, %{id: id, metric: :process_count}}
      assert id == alert.id

      # Under the threshold but not under threshold * (1 - 0.1): it stays.
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: round(count / 0.95)}})

      for _ <- 1..5 do
        Health.sample_now()
        assert [%{id: ^id}] = active(:process_count)
      end

      # Well under it: it clears after 3 consecutive samples, not before.
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: count * 10}})
      Health.sample_now()
      Health.sample_now()
      assert [%{id: ^id}] = active(:process_count)
      refute_received {:cluster_scope, :alert, :cleared, %{metric: :process_count}}
      Health.sample_now()
      assert [] = active(:process_count)
      assert_received {:cluster_scope, :alert, :cleared, %{id: ^id, cleared_at_ms: at}}
      assert is_integer(at)
    end

    test "the periodic samples raise and clear it too, and subscribers get both" do
      {:ok, _} = Health.configure_sampling(interval_ms: 100)
      Health.subscribe_to_alerts()
      count = :erlang.system_info(:process_count)
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})
      assert_receive {:cluster_scope, :alert, :raised, %{metric: :process_count} = alert}, 3_000

      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: nil}})
      id = alert.id
      assert_receive {:cluster_scope, :alert, :cleared, %{id: ^id}}, 3_000
      Health.unsubscribe_from_alerts()
    end

    test "critical escalates a warning; disabling a level clears its alert" do
      Health.subscribe_to_alerts()
      count = :erlang.system_info(:process_count)

      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})
      Health.sample_now()
      assert [%{severity: :warning, id: warning_id}] = active(:process_count)

      {:ok, _} =
        Health.set_alert_thresholds(%{
          process_count: %{warning: div(count, 3), critical: div(count, 2)}
        })

      Health.sample_now()
      assert [%{severity: :critical, threshold: t}] = active(:process_count)
      assert t == div(count, 2)
      assert_received {:cluster_scope, :alert, :cleared, %{id: ^warning_id}}

      assert_received {:cluster_scope, :alert, :raised,
                       %{severity: :critical, metric: :process_count}}

      assert Alerts.worst(Health.alerts()) == :critical

      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: nil, critical: nil}})
      Health.sample_now()
      assert [] = active(:process_count)
    end

    test "hysteresis and clear_after_samples are settings" do
      count = :erlang.system_info(:process_count)

      {:ok, th} =
        Health.set_alert_thresholds(%{
          "process_count" => %{"warning" => div(count, 2)},
          "clear_after_samples" => 1,
          "hysteresis" => 0.5
        })

      assert th.clear_after_samples == 1 and th.hysteresis == 0.5
      Health.sample_now()
      assert [_] = active(:process_count)
      # count < (count * 1.5) * (1 - 0.5)? No: 0.75 * count is below count.
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: round(count * 1.5)}})
      Health.sample_now()
      assert [_] = active(:process_count)
      # count < (count * 3) * 0.5: cleared after a single sample.
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: count * 3}})
      Health.sample_now()
      assert [] = active(:process_count)
    end
  end

  describe "thresholds" do
    test "the defaults are documented values" do
      d = Health.default_thresholds()
      assert d.metrics.process_usage_pct == %{warning: 80, critical: 90}
      assert d.metrics.atom_usage_pct == %{warning: 80, critical: 90}
      assert d.metrics.port_usage_pct == %{warning: 80, critical: 90}
      assert d.metrics.scheduler_utilization_pct.warning == 90
      assert d.metrics.max_message_queue_len == %{warning: 10_000, critical: 100_000}
      assert d.metrics.connectivity == %{warning: 1, critical: 2}
      assert d.hysteresis == 0.1 and d.clear_after_samples == 3
      assert Health.thresholds() == d
    end

    test "validation errors name every bad field and change nothing" do
      before = Health.thresholds()

      assert {:error, errors} =
               Health.set_alert_thresholds(%{
                 "process_count" => %{"warning" => "lots"},
                 "atom_usage_pct" => %{warning: 95, critical: 90},
                 "no_such_metric" => %{warning: 1},
                 "port_usage_pct" => 5,
                 "memory_total_pct" => %{"severe" => 1},
                 "connectivity" => %{warning: 3},
                 "hysteresis" => 1.5,
                 "clear_after_samples" => 0,
                 "run_queue_per_scheduler" => %{critical: -1}
               })

      fields = errors |> Enum.map(& &1.field) |> Enum.sort()

      assert fields ==
               Enum.sort([
                 "process_count.warning",
                 "atom_usage_pct",
                 "no_such_metric",
                 "port_usage_pct",
                 "memory_total_pct.severe",
                 "connectivity.warning",
                 "hysteresis",
                 "clear_after_samples",
                 "run_queue_per_scheduler.critical"
               ])

      assert Enum.find(errors, &(&1.field == "atom_usage_pct")).message =~ "above critical"
      assert Health.thresholds() == before
      assert {:error, [%{field: "thresholds"}]} = Thresholds.apply_changes(before, [:nope])
    end

    test "health_interval_ms is a validated option, 1 s by default" do
      assert ClusterScope.Config.defaults().health_interval_ms == 1_000

      assert {:ok, %{health_interval_ms: 250}} =
               ClusterScope.Config.validate(health_interval_ms: 250)

      assert {:error, %{health_interval_ms: 1_000}, [{:health_interval_ms, message}]} =
               ClusterScope.Config.validate(health_interval_ms: 5)

      assert message =~ "100..600000"
    end

    test "a level left out is kept, nil disables it" do
      {:ok, th} = Health.set_alert_thresholds(%{process_usage_pct: %{warning: 50}})
      assert th.metrics.process_usage_pct == %{warning: 50, critical: 90}
      {:ok, th} = Health.set_alert_thresholds(%{process_usage_pct: %{critical: nil}})
      assert th.metrics.process_usage_pct == %{warning: 50, critical: nil}
    end
  end

  describe "self-protection" do
    test "induced load lengthens the interval, collectors first; it returns to normal after" do
      {:ok, _} = Health.configure_sampling(interval_ms: 200)
      n = 4 * :erlang.system_info(:schedulers_online)

      spin = fn spin -> spin.(spin) end
      loops = for _ <- 1..n, do: spawn(fn -> spin.(spin) end)
      on_exit(fn -> Enum.each(loops, &Process.exit(&1, :kill)) end)

      status =
        await(
          fn ->
            s = Health.status()
            if s.interval_ms > 200, do: s
          end,
          5_000,
          fn -> "the interval did not grow under load: #{inspect(Health.status())}" end
        )

      assert status.throttled
      assert status.reason in [:run_queue, :scheduler_utilization]
      assert status.skipped_collectors -- [:horde_skew] == [:message_queues]
      assert Health.latest().message_queues.status == :throttled

      Enum.each(loops, &Process.exit(&1, :kill))

      await(
        fn ->
          s = Health.status()
          s.interval_ms == 200 and not s.throttled and s.skipped_collectors == []
        end,
        15_000,
        fn -> "the interval did not come back after the load: #{inspect(Health.status())}" end
      )
    end

    test "an own-cost budget that is too small backs off; a normal one comes back" do
      {:ok, _} = Health.configure_sampling(interval_ms: 200, cost_budget: 1.0e-6)

      status =
        await(
          fn ->
            s = Health.status()
            if s.interval_ms >= 800, do: s
          end,
          5_000,
          fn -> "the interval did not grow over budget: #{inspect(Health.status())}" end
        )

      assert status.reason == :own_cost
      assert status.skipped_collectors -- [:horde_skew] == [:message_queues]
      assert status.own_cost.budget == 1.0e-6
      assert status.own_cost.typical_sample_us > 0
      assert status.max_interval_ms == 3_200
      assert status.interval_ms <= 3_200

      {:ok, _} = Health.configure_sampling(cost_budget: 0.01)

      await(
        fn ->
          s = Health.status()
          s.interval_ms == 200 and not s.throttled and s.reason == nil
        end,
        10_000,
        fn -> "the interval did not come back within budget: #{inspect(Health.status())}" end
      )
    end

    test "sampling options are validated" do
      assert {:error, errors} =
               Health.configure_sampling(interval_ms: 0, cost_budget: 2, nonsense: 1)

      assert Enum.sort(Enum.map(errors, & &1.field)) == ["cost_budget", "interval_ms", "nonsense"]

      assert {:error, [%{field: "max_interval_ms"}]} =
               Health.configure_sampling(interval_ms: 1_000, max_interval_ms: 500)
    end
  end

  describe "baselines" do
    test "a membership change resets the baselines that depend on cluster size only" do
      {:ok, _} = Health.configure_sampling(interval_ms: 100)

      await(
        fn ->
          b = Health.baselines()
          b[:port_count][:samples] >= 3 and b[:atom_usage_pct][:samples] >= 3
        end,
        3_000,
        fn -> "no baselines after 3 s: #{inspect(Health.baselines())}" end
      )

      before = Health.status().membership_changes

      send(
        Process.whereis(Monitor),
        {:cluster_scope, :cluster, %{type: :up, node: :"joiner@127.0.0.1", id: 0}}
      )

      b = Health.baselines()
      assert (b[:port_count][:samples] || 0) <= 1
      assert (b[:process_count][:samples] || 0) <= 1
      assert (b[:reductions_per_s][:samples] || 0) <= 1
      assert b[:atom_usage_pct][:samples] >= 3
      assert Health.status().membership_changes == before + 1
      assert is_integer(Health.status().baselines_reset_at_ms)
    end
  end

  describe "message queues" do
    test "the scan finds the longest queue and its alert clears when it drains" do
      {:ok, _} = Health.configure_sampling(interval_ms: 100, scan_interval_ms: 200)
      Health.subscribe_to_alerts()
      {:ok, _} = Health.set_alert_thresholds(%{max_message_queue_len: %{warning: 300}})

      pid = spawn(fn -> receive do: (:stop -> :ok) end)
      for i <- 1..500, do: send(pid, {:junk, i})
      text = ClusterScope.ProcessRef.to_string(pid)

      top =
        await(
          fn ->
            case Health.latest().message_queues.top do
              [%{pid: ^text} = top | _] -> top
              _ -> nil
            end
          end,
          5_000,
          fn -> "the scan did not find the queue: #{inspect(Health.latest().message_queues)}" end
        )

      assert top.message_queue_len == 500
      assert is_binary(top.current_function)
      assert Health.status().collectors.message_queues.processes_scanned > 100

      assert_receive {:cluster_scope, :alert, :raised, %{metric: :max_message_queue_len} = a},
                     3_000

      assert a.message =~ text

      send(pid, :stop)
      id = a.id
      assert_receive {:cluster_scope, :alert, :cleared, %{id: ^id}}, 3_000
    end
  end

  describe "the system monitor slot" do
    test "it is used only when free, never taken from another process, and given back" do
      self_monitor = Process.whereis(Monitor)
      assert {^self_monitor, [:busy_dist_port]} = :erlang.system_monitor()

      # Stopped, the monitor frees the slot.
      :ok = Supervisor.terminate_child(ClusterScope.Supervisor, Monitor)
      assert :erlang.system_monitor() == :undefined

      # Someone else holds it: the monitor starts without it.
      me = self()
      :erlang.system_monitor(me, [:busy_port])

      on_exit(fn ->
        case :erlang.system_monitor() do
          {pid, _} when pid != self_monitor -> :erlang.system_monitor(:undefined)
          _ -> :ok
        end

        if Process.whereis(Monitor) == nil,
          do: Supervisor.restart_child(ClusterScope.Supervisor, Monitor)
      end)

      {:ok, _} = Supervisor.restart_child(ClusterScope.Supervisor, Monitor)
      assert {^me, [:busy_port]} = :erlang.system_monitor()
      sample = Health.sample_now()
      assert sample.busy_dist_port.status == :unavailable
      assert sample.busy_dist_port.reason =~ "another system monitor"
      assert sample.values.busy_dist_port_events == nil
      assert Health.status().busy_dist_port.status == :unavailable
      assert {^me, [:busy_port]} = :erlang.system_monitor()

      # Free again and restarted: it takes the slot; taken from it later, it
      # lets go and does not take it back.
      :erlang.system_monitor(:undefined)
      :ok = Supervisor.terminate_child(ClusterScope.Supervisor, Monitor)
      {:ok, pid} = Supervisor.restart_child(ClusterScope.Supervisor, Monitor)
      assert {^pid, _} = :erlang.system_monitor()
      assert Health.sample_now().busy_dist_port == %{status: :installed, events: 0}

      :erlang.system_monitor(me, [:busy_port])
      assert Health.sample_now().busy_dist_port.status == :unavailable
      assert Health.sample_now().busy_dist_port.reason =~ "replaced"
      assert {^me, _} = :erlang.system_monitor()

      :erlang.system_monitor(:undefined)
      :ok = Supervisor.terminate_child(ClusterScope.Supervisor, Monitor)
      {:ok, pid} = Supervisor.restart_child(ClusterScope.Supervisor, Monitor)
      assert {^pid, _} = :erlang.system_monitor()
    end
  end

  describe "Alerts.evaluate/4" do
    defp eval(tracks, value, levels, opts \\ []) do
      th = %{
        metrics: Map.put(Thresholds.defaults().metrics, :process_count, levels),
        hysteresis: Keyword.get(opts, :hysteresis, 0.1),
        clear_after_samples: Keyword.get(opts, :k, 3)
      }

      {tracks, events, _} =
        Alerts.evaluate(tracks, %{process_count: value}, th, %{
          node: node(),
          now_ms: 0,
          seq: 0,
          sample: %{}
        })

      {tracks, Enum.map(events, fn {action, a} -> {action, a.severity} end)}
    end

    test "de-escalates from critical to warning, and a missing value changes nothing" do
      levels = %{warning: 100, critical: 200}
      {t, [raised: :critical]} = eval(%{}, 250, levels)
      {t, []} = eval(t, nil, levels)
      {t, []} = eval(t, 150, levels)
      {t, []} = eval(t, 150, levels)
      {t, [cleared: :critical, raised: :warning]} = eval(t, 150, levels)
      {t, []} = eval(t, 95, levels)
      {t, []} = eval(t, 80, levels)
      {t, []} = eval(t, 80, levels)
      {t, [cleared: :warning]} = eval(t, 80, levels)
      assert Alerts.active(t) == []
    end
  end
end
