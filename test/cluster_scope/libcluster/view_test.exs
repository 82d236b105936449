defmodule ClusterScope.Libcluster.ViewTest do
  # The libcluster view on this node with the real libcluster and
  # :telemetry: topologies from the configuration (malformed ones listed
  # with an error), expected nodes where knowable, libcluster's errors,
  # and the telemetry handler surviving a restart of :telemetry.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias ClusterScope.Cluster.Libcluster
  alias ClusterScope.Test.Cluster, as: TestCluster

  @moduletag :libcluster

  setup do
    previous = Application.get_env(:libcluster, :topologies)
    was_running? = ClusterScope.Telemetry.running?()
    {:ok, _} = Application.ensure_all_started(:telemetry)
    await_telemetry(:attached, 5_000)

    on_exit(fn ->
      # Other tests expect the VM as it was (no :telemetry running).
      unless was_running?, do: Application.stop(:telemetry)

      if previous,
        do: Application.put_env(:libcluster, :topologies, previous),
        else: Application.delete_env(:libcluster, :topologies)
    end)

    :ok
  end

  test "configured topologies: expected, missing, failing with libcluster's error" do
    nowhere = :"cs_view_nowhere@127.0.0.1"

    Application.put_env(:libcluster, :topologies,
      static: [strategy: Cluster.Strategy.Epmd, config: [hosts: [nowhere, node()]]],
      local: [strategy: Cluster.Strategy.LocalEpmd],
      gossip: [strategy: Cluster.Strategy.Gossip],
      nostrategy: [config: []],
      badconfig: [strategy: Cluster.Strategy.Epmd, config: :oops],
      junk: 42
    )

    :ok = ClusterScope.subscribe(:cluster)

    # What libcluster's Epmd strategy reports when it cannot connect.
    apply(:telemetry, :execute, [
      [:libcluster, :connect_node, :error],
      %{},
      %{node: nowhere, topology: :static, reason: :unreachable}
    ])

    # The same cast State had before: a suspect event attributed to libcluster.
    assert_receive {:cluster_scope, :cluster, %{type: :suspect, node: ^nowhere} = event}, 3_000
    assert event.details.attribution == :libcluster

    view =
      TestCluster.poll(System.monotonic_time(:millisecond) + 3_000, fn ->
        view = Libcluster.view()
        static = Enum.find(view.topologies, &(&1.name == :static))
        if static.failing != [], do: view
      end) || flunk("the error never showed: #{inspect(Libcluster.view())}")

    assert view.available and view.telemetry == :attached
    names = Enum.map(view.topologies, & &1.name)
    assert names == [:static, :local, :gossip, :nostrategy, :badconfig]

    static = Enum.find(view.topologies, &(&1.name == :static))
    assert static.sources == [:config]
    refute static.running
    assert static.expected == Enum.sort([nowhere, node()])
    assert static.missing == [nowhere]
    assert static.connected == []

    assert [%{node: ^nowhere, action: :connect, reason: :unreachable, failures: 1}] =
             static.failing

    local = Enum.find(view.topologies, &(&1.name == :local))
    assert node() in local.expected
    assert local.expected_source =~ "epmd"
    refute node() in local.missing

    gossip = Enum.find(view.topologies, &(&1.name == :gossip))
    assert gossip.expected == nil and gossip.missing == []
    assert gossip.expected_source =~ "not knowable"

    assert Enum.find(view.topologies, &(&1.name == :nostrategy)).config_error =~ "strategy"
    assert Enum.find(view.topologies, &(&1.name == :badconfig)).config_error =~ ":config"

    # A connect that succeeds clears the failure.
    apply(:telemetry, :execute, [
      [:libcluster, :connect_node, :ok],
      %{duration: 1},
      %{node: nowhere, topology: :static}
    ])

    assert TestCluster.poll(System.monotonic_time(:millisecond) + 3_000, fn ->
             Enum.find(Libcluster.view().topologies, &(&1.name == :static)).failing == []
           end)

    # Encodes as JSON (the HTTP answer).
    assert {:ok, _} = ClusterScope.JSON.encode(view)

    Application.put_env(:libcluster, :topologies, :not_a_list)
    assert [%{config_error: error}] = Libcluster.view().topologies
    assert error =~ "not a keyword list"
  end

  test "an unnamed Cluster.Supervisor shows once one of its strategies reported" do
    Application.delete_env(:libcluster, :topologies)
    topologies = [unnamed: [strategy: ClusterScope.Test.ManualStrategy, config: [hosts: []]]]
    {:ok, sup} = ClusterScope.Test.LibclusterHost.start_supervisor(topologies, nil)
    on_exit(fn -> Process.exit(sup, :kill) end)

    # Not registered, nothing reported yet: not found.
    refute Enum.any?(Libcluster.view().topologies, &(&1.name == :unnamed))

    nowhere = :"cs_view_nowhere2@127.0.0.1"

    assert {:error, [{^nowhere, false}]} =
             ClusterScope.Test.ManualStrategy.connect(:unnamed, [nowhere])

    unnamed =
      TestCluster.poll(System.monotonic_time(:millisecond) + 3_000, fn ->
        Enum.find(Libcluster.view().topologies, &(&1.name == :unnamed))
      end) || flunk("the unnamed supervisor's topology never showed")

    assert unnamed.sources == [:supervisor]
    assert unnamed.running
    assert unnamed.supervisor == inspect(sup)
    assert [%{node: ^nowhere, reason: :unreachable}] = unnamed.failing
  end

  test "a restarted :telemetry loses handlers: the handler is attached again" do
    :ok = Application.stop(:telemetry)
    on_exit(fn -> Application.ensure_all_started(:telemetry) end)
    refute ClusterScope.Telemetry.running?()
    await_telemetry(:waiting, 8_000)

    # Loaded but not running: ClusterScope emits nothing, so :telemetry
    # logs nothing.
    log =
      capture_log(fn ->
        ClusterScope.Telemetry.execute([:cluster_scope, :test], %{value: 1}, %{})
        Logger.flush()
      end)

    refute log =~ "Failed to lookup telemetry handlers"

    {:ok, _} = Application.ensure_all_started(:telemetry)
    await_telemetry(:attached, 3_000)

    assert Enum.any?(
             apply(:telemetry, :list_handlers, [[:libcluster, :disconnect_node, :ok]]),
             &(&1.id == "cluster_scope_libcluster")
           )
  end

  defp await_telemetry(status, timeout) do
    TestCluster.poll(System.monotonic_time(:millisecond) + timeout, fn ->
      Libcluster.telemetry_status() == status
    end) || flunk("telemetry status never #{status}: #{Libcluster.telemetry_status()}")
  end
end
