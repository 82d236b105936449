defmodule ClusterScope.TelemetryTest do
  # :telemetry is not installed here: ClusterScope.Telemetry must be a safe
  # no-op, and the runner and the cluster state must work as before. A
  # test-only backend (a module of this file, not :telemetry) checks the
  # events' names, measurements and metadata.
  use ExUnit.Case, async: false

  alias ClusterScope.Health
  alias ClusterScope.Telemetry

  defmodule Backend do
    @moduledoc false
    # Stands in for :telemetry.execute/3: forwards every event to the test.
    def execute(event, measurements, metadata) do
      case :persistent_term.get({__MODULE__, :test}, nil) do
        nil -> :ok
        pid -> send(pid, {:telemetry_event, event, measurements, metadata})
      end
    end
  end

  defmodule Raising do
    @moduledoc false
    def execute(_event, _measurements, _metadata), do: raise("a handler crashed")
  end

  setup do
    ClusterScope.TestOps.register()

    # With the library on the code path (ERL_LIBS), an earlier test may have
    # started :telemetry: these tests are about a node where it does not run.
    if Telemetry.running?() do
      :ok = Application.stop(:telemetry)
      on_exit(fn -> Application.ensure_all_started(:telemetry) end)
    end

    :ok
  end

  test "without :telemetry, execute/3 is a no-op that never raises" do
    # Not installed (CI), or installed and not running (runs with ERL_LIBS;
    # libcluster/view_test.exs covers a loaded, stopped :telemetry).
    refute Telemetry.running?()
    refute Telemetry.enabled?()
    assert :ok = Telemetry.execute([:cluster_scope, :test], %{value: 1}, %{})
    assert :ok = Telemetry.execute(:not_a_list, :not_a_map, nil)
  end

  test "without :telemetry, the runner and the cluster state work as before" do
    assert {:ok, %{operations: [_ | _]}} = ClusterScope.run("list_operations")
    assert {:error, %{code: :not_found}} = ClusterScope.run("test_fail", %{how: "not_found"})
    assert {:error, %{code: :internal}} = ClusterScope.run("test_fail", %{how: "raise"})

    # Events go through State's emit (and its telemetry call) unchanged.
    ClusterScope.subscribe(:cluster)
    on_exit(fn -> ClusterScope.Mode.set(:multi_node) end)
    ClusterScope.Test.ModeSwitch.allow()
    {:ok, %{nodes: [_, _]}} = ClusterScope.Mode.set(:simulated, nodes: 2)
    assert_receive {:cluster_scope, :cluster, %{type: :up}}, 3_000
    {:ok, _} = ClusterScope.Mode.set(:multi_node)
    assert %{nodes: [_ | _]} = ClusterScope.Cluster.State.topology()
  end

  test "a handler that raises cannot break the caller" do
    Telemetry.put_backend(Raising)
    on_exit(fn -> Telemetry.put_backend(nil) end)
    assert Telemetry.enabled?()
    assert :ok = Telemetry.execute([:x], %{}, %{})
    assert {:ok, _} = ClusterScope.run("list_operations")
  end

  describe "with a backend" do
    setup do
      :persistent_term.put({Backend, :test}, self())
      Telemetry.put_backend(Backend)

      on_exit(fn ->
        Telemetry.put_backend(nil)
        :persistent_term.erase({Backend, :test})
        Health.reset_alert_thresholds()
      end)
    end

    test "operations emit start and stop, or exception with the error code" do
      {:ok, _} = ClusterScope.run("list_operations")
      meta = %{operation: "list_operations", version: 1, node: node()}

      assert_receive {:telemetry_event, [:cluster_scope, :operation, :start], %{system_time: t},
                      ^meta}

      assert is_integer(t)

      assert_receive {:telemetry_event, [:cluster_scope, :operation, :stop], %{duration: d},
                      ^meta}

      assert is_integer(d) and d >= 0

      {:error, _} = ClusterScope.run("test_fail", %{how: "not_found"})

      assert_receive {:telemetry_event, [:cluster_scope, :operation, :start], _,
                      %{operation: "test_fail"}}

      assert_receive {:telemetry_event, [:cluster_scope, :operation, :exception], %{duration: _},
                      %{operation: "test_fail", error_code: :not_found, node: n}}

      assert n == node()
    end

    test "alerts emit raised and cleared with the alert as metadata" do
      count = :erlang.system_info(:process_count)
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})
      Health.sample_now()

      assert_receive {:telemetry_event, [:cluster_scope, :alert, :raised], %{value: v},
                      %{metric: :process_count, severity: :warning} = alert}

      assert v == alert.value
      {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: nil}})
      Health.sample_now()
      id = alert.id

      assert_receive {:telemetry_event, [:cluster_scope, :alert, :cleared], _, %{id: ^id}}
    end

    test "cluster state emits node up and down" do
      on_exit(fn -> ClusterScope.Mode.set(:multi_node) end)
      ClusterScope.Test.ModeSwitch.allow()
      {:ok, %{nodes: [s1, _]}} = ClusterScope.Mode.set(:simulated, nodes: 2)

      assert_receive {:telemetry_event, [:cluster_scope, :node, :up], %{system_time: _},
                      %{node: ^s1, observer: observer, cause: _, event_id: _}},
                     3_000

      assert observer == node()
      :ok = ClusterScope.Simulator.fail(s1)

      assert_receive {:telemetry_event, [:cluster_scope, :node, :down], _, %{node: ^s1}}, 3_000
    end
  end
end
