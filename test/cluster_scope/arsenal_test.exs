defmodule ClusterScope.Test.ArsenalRegistryStandIn do
  # A stand-in for a host's Arsenal registry (either module name Arsenal
  # ships under): it checks the contract the way Arsenal does (rest_config/0
  # and the three callbacks) and keeps what it got.
  defmacro __using__(_) do
    quote do
      use GenServer

      def start_link(_), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)
      def register_operation(module), do: GenServer.call(__MODULE__, {:register, module})
      def operations, do: GenServer.call(__MODULE__, :operations)

      @impl true
      def init(_), do: {:ok, []}

      @impl true
      def handle_call({:register, module}, _from, ops) do
        config = module.rest_config()

        if is_map(config) and Map.has_key?(config, :method) and Map.has_key?(config, :path) and
             function_exported?(module, :validate_params, 1) and
             function_exported?(module, :execute, 1) and
             function_exported?(module, :format_response, 1) do
          {:reply, {:ok, config}, [module | ops]}
        else
          {:reply, {:error, :invalid_operation}, ops}
        end
      end

      def handle_call(:operations, _from, ops), do: {:reply, ops, ops}
    end
  end
end

defmodule Arsenal.Registry do
  use ClusterScope.Test.ArsenalRegistryStandIn
end

defmodule OTPSupervisor.Core.Arsenal.Registry do
  use ClusterScope.Test.ArsenalRegistryStandIn
end

defmodule ClusterScope.ArsenalTest do
  use ExUnit.Case, async: false

  setup do
    ClusterScope.TestOps.register([ClusterScope.TestOps.NeedsHorde, ClusterScope.TestOps.Mutate])
    {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)
    on_exit(fn -> ClusterScope.unregister_operation(MyApp.Ops.Greet) end)
    :ok
  end

  test "without a running registry it says so" do
    assert ClusterScope.Arsenal.find_registry() == nil
    assert ClusterScope.Arsenal.register_all() == {:error, :no_arsenal_registry}
  end

  test "registers every available read operation into the host's registry" do
    start_supervised!(Arsenal.Registry)
    assert ClusterScope.Arsenal.find_registry() == Arsenal.Registry

    assert {:ok, report} = ClusterScope.Arsenal.register_all()
    assert report.registry == Arsenal.Registry
    assert ClusterScope.Operations.NodeBuildInfo in report.registered
    assert ClusterScope.Operations.ListOperations in report.registered
    assert MyApp.Ops.Greet in report.registered
    assert report.failed == []

    assert %{reason: reason} =
             Enum.find(report.skipped, &(&1.module == ClusterScope.TestOps.NeedsHorde))

    assert reason =~ "Horde"
    assert Enum.sort(Arsenal.Registry.operations()) == Enum.sort(report.registered)
  end

  test "by default the bridge registers no mutation and nothing sensitive" do
    # A host's routes skip ClusterScope's token, Origin check, read-only
    # mode and timeout: kill, send, trace or set_mode there would be open.
    start_supervised!(Arsenal.Registry)
    assert {:ok, report} = ClusterScope.Arsenal.register_all()

    for module <- report.registered do
      {:ok, meta} = ClusterScope.Operation.meta(module)
      refute meta.mutating, "#{meta.name} is mutating"
      assert meta.scope == :read, "#{meta.name} has scope #{meta.scope}"
    end

    for module <- [
          ClusterScope.Operations.KillProcess,
          ClusterScope.Operations.SendMessage,
          ClusterScope.Operations.TraceProcess,
          ClusterScope.Operations.SetMode,
          ClusterScope.Operations.SetAlertThresholds,
          ClusterScope.Operations.StopTraceSession,
          ClusterScope.Operations.GetTraceEvents,
          ClusterScope.Operations.ListTraceSessions,
          ClusterScope.Operations.GetProcessInfo,
          ClusterScope.TestOps.Mutate
        ] do
      refute module in Arsenal.Registry.operations()
      assert %{reason: reason} = Enum.find(report.skipped, &(&1.module == module))
      assert reason =~ "allow:"
    end
  end

  test "mutations and sensitive operations listed in allow: are registered, exactly those" do
    start_supervised!(Arsenal.Registry)
    {:ok, default} = ClusterScope.Arsenal.register_all()

    {:ok, report} =
      ClusterScope.Arsenal.register_all(
        allow: ["kill_process", "get_trace_events", "test_mutate"]
      )

    assert Enum.sort(report.registered -- default.registered) ==
             Enum.sort([
               ClusterScope.Operations.KillProcess,
               ClusterScope.Operations.GetTraceEvents,
               ClusterScope.TestOps.Mutate
             ])

    refute ClusterScope.Operations.SendMessage in report.registered
    refute ClusterScope.Operations.SetMode in report.registered

    # read_only: true still keeps mutations out, listed or not.
    {:ok, ro} = ClusterScope.Arsenal.register_all(read_only: true, allow: ["test_mutate"])
    refute ClusterScope.TestOps.Mutate in ro.registered
    assert %{reason: reason} = Enum.find(ro.skipped, &(&1.module == ClusterScope.TestOps.Mutate))
    assert reason =~ "read-only"
  end

  test "an unknown name in allow: is an error and nothing is registered" do
    start_supervised!(Arsenal.Registry)

    assert {:error, {:unknown_operations, ["kill_everything", "rm_rf"]}} =
             ClusterScope.Arsenal.register_all(
               allow: ["kill_process", "rm_rf", "kill_everything"]
             )

    assert {:error, {:unknown_operations, ["42"]}} =
             ClusterScope.Arsenal.register_all(allow: [:kill_process, 42])

    assert Arsenal.Registry.operations() == []
  end

  test "the registry of the application Arsenal came from is found too" do
    start_supervised!(OTPSupervisor.Core.Arsenal.Registry)
    assert ClusterScope.Arsenal.find_registry() == OTPSupervisor.Core.Arsenal.Registry

    assert {:ok, report} = ClusterScope.Arsenal.register_all()
    assert report.registry == OTPSupervisor.Core.Arsenal.Registry
    assert ClusterScope.Operations.NodeBuildInfo in report.registered

    assert Enum.sort(OTPSupervisor.Core.Arsenal.Registry.operations()) ==
             Enum.sort(report.registered)
  end

  test "a registered operation runs through the bare Arsenal contract" do
    # What an Arsenal host does with a request: validate, execute, format.
    module = MyApp.Ops.Greet
    assert {:ok, params} = module.validate_params(%{"name" => "ada", "shout" => "false"})
    assert {:ok, result} = module.execute(params)
    assert %{greeting: "Hello, ada, from " <> _} = module.format_response(result)
    assert {:error, [%{field: "name", message: "is required"}]} = module.validate_params(%{})

    build = ClusterScope.Operations.NodeBuildInfo
    {:ok, params} = build.validate_params(%{"node" => Atom.to_string(node())})
    {:ok, info} = build.execute(params)
    assert %{node: n, native: %{core_version: _}} = build.format_response(info)
    assert n == node()
  end
end
