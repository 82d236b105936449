# The registry under the name a host's Arsenal uses, as a stand-in only when
# the real `arsenal` package is not loadable (with ERL_LIBS=... the real one
# is used, by the :arsenal-tagged tests of arsenal_real_test.exs).
unless Code.ensure_loaded?(Arsenal.Registry) do
  defmodule Arsenal.Registry do
    @moduledoc false
    use ClusterScope.Test.ArsenalStandIn
  end
end

defmodule OTPSupervisor.Core.Arsenal.Registry do
  @moduledoc false
  use ClusterScope.Test.ArsenalStandIn
end

defmodule ClusterScope.ArsenalTest.Holder do
  @moduledoc false
  # A host's own Arsenal operation that happens to hold a ClusterScope name
  # and route.
  def name, do: :cluster_scope_node_build_info
  def category, do: :host
  def description, do: "the host's"
  def params_schema, do: %{}
  def metadata, do: %{}
  def rest_config, do: %{method: :get, path: "/api/v1/host"}
  def execute(_), do: {:ok, :host}
end

defmodule ClusterScope.ArsenalTest.RouteHolder do
  @moduledoc false
  def name, do: :host_topology
  def category, do: :host
  def description, do: "the host's"
  def params_schema, do: %{}
  def metadata, do: %{}
  def rest_config, do: %{method: :get, path: "/api/v1/cluster_scope/cluster/topology"}
  def execute(_), do: {:ok, :host}
end

for missing <- [:name, :category, :execute] do
  defmodule Module.concat(ClusterScope.ArsenalTest, "Without_#{missing}") do
    @moduledoc false
    if missing != :name, do: def(name, do: :cluster_scope_partial)
    if missing != :category, do: def(category, do: :host)
    if missing != :execute, do: def(execute(_), do: {:ok, :ran})
    def description, do: "partial"
    def params_schema, do: %{}
    def metadata, do: %{}
    def rest_config, do: %{method: :get, path: "/api/v1/partial"}
  end
end

defmodule ClusterScope.ArsenalTest.RaisingDescription do
  @moduledoc false
  def name, do: :cluster_scope_raising
  def category, do: :host
  def description, do: raise("no description")
  def params_schema, do: %{}
  def metadata, do: %{}
  def rest_config, do: %{method: :get, path: "/api/v1/raising"}
  def execute(_), do: {:ok, :ran}
end

defmodule ClusterScope.ArsenalTest.Refusing do
  @moduledoc false
  # A registry that refuses every operation.
  def list_operations, do: []
  def register_operation(_module), do: {:error, :refused}
end

defmodule ClusterScope.ArsenalTest do
  use ExUnit.Case, async: false

  alias ClusterScope.Arsenal.Face
  alias ClusterScope.Test.ArsenalStandIn.Registry, as: StandIn

  # The names and routes of the built-in operations of arsenal 0.1.0
  # (nshkrdotcom/arsenal at 1d96ca9, lib/arsenal/operations); the :arsenal
  # tests check against the running registry itself.
  @builtin_names ~w(create_sandbox destroy_sandbox cluster_health cluster_supervision_trees
                    cluster_topology horde_registry_inspect node_info process_list
                    get_process_info get_sandbox_info hot_reload_sandbox kill_process
                    list_processes_v1 list_sandboxes list_supervisors restart_process
                    restart_sandbox send_message start_process trace_process)a
  @builtin_paths ~w(/api/v1/sandboxes /api/v1/sandboxes/:sandbox_id /api/v1/cluster/health
                    /api/v1/cluster/supervision-trees /api/v1/cluster/topology
                    /api/v1/cluster/horde-registry /api/v1/cluster/nodes/:node/info
                    /api/v1/cluster/processes /api/v1/processes/:pid/info
                    /api/v1/sandboxes/:sandbox_id/hot-reload /api/v1/processes/:pid
                    /api/v1/processes /api/v1/supervisors /api/v1/processes/:pid/restart
                    /api/v1/sandboxes/:sandbox_id/restart /api/v1/processes/:pid/message
                    /api/v1/processes/:pid/trace)

  @guarded ~w(kill_process send_message trace_process set_mode set_alert_thresholds
              stop_trace_session get_trace_events list_trace_sessions get_process_info)

  setup do
    ClusterScope.TestOps.register([
      ClusterScope.TestOps.NeedsHorde,
      ClusterScope.TestOps.Mutate,
      ClusterScope.TestOps.EchoV1,
      ClusterScope.TestOps.EchoV2,
      ClusterScope.TestOps.Fail,
      ClusterScope.Test.SlowOp
    ])

    {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)
    on_exit(fn -> ClusterScope.unregister_operation(MyApp.Ops.Greet) end)
    # Every test starts with the default settings of the faces.
    on_exit(fn -> Face.put_settings(%{deadline_ms: 4_000, authorize: nil}) end)
    :ok
  end

  defp ops, do: for({meta, _} <- ClusterScope.Operation.Registry.list(), do: meta)

  describe "finding 0: what Arsenal's registry accepts" do
    test "the operation modules themselves are refused, as the real registry refuses them" do
      # What the bridge registered before: 0 registered, every one failed
      # with missing callbacks (the real registry needs name/0, category/0).
      start_supervised!(StandIn)

      for meta <- ops() do
        assert StandIn.register_operation(meta.module) ==
                 {:error, {:invalid_operation, :missing_callbacks}},
               "#{inspect(meta.module)} would be registered with its bare execute/1"

        refute function_exported?(meta.module, :name, 0)
      end

      assert StandIn.list_operations() == []
    end

    test "the stand-in checks what build_operation_info/1 checks, and nothing less" do
      start_supervised!(StandIn)
      holder = ClusterScope.ArsenalTest.Holder

      assert {:ok, %{name: :cluster_scope_node_build_info, category: :host, schema: %{}}} =
               StandIn.register_operation(holder)

      # Each required callback missing in turn, a module that cannot be
      # loaded, and one whose description/0 raises.
      for missing <- [:name, :category, :execute] do
        assert StandIn.register_operation(Module.concat(__MODULE__, "Without_#{missing}")) ==
                 {:error, {:invalid_operation, :missing_callbacks}}
      end

      assert {:error, {:module_error, %ArgumentError{}}} =
               StandIn.register_operation(No.Such.Module)

      assert {:error, {:module_error, %RuntimeError{message: "no description"}}} =
               StandIn.register_operation(__MODULE__.RaisingDescription)

      assert [%{module: ^holder}] = StandIn.list_operations()
    end

    test "every face passes the registry's checks" do
      start_supervised!(StandIn)

      for meta <- ops() do
        {:ok, face} = Face.of(meta.module)
        assert {:ok, info} = StandIn.register_operation(face)
        assert is_atom(info.name) and info.category == :cluster_scope
        assert is_binary(info.description) and is_map(info.schema) and is_map(info.metadata)
        assert %{method: _, path: "/api/v1/cluster_scope/" <> _} = info.rest_config
      end
    end
  end

  describe "names and routes" do
    test "namespaced, unique, and apart from Arsenal's built-ins" do
      faces = for meta <- ops(), {:ok, face} = Face.of(meta.module), do: {meta, face}
      names = for {_, face} <- faces, do: face.name()

      assert Enum.uniq(names) == names
      assert Enum.all?(names, &String.starts_with?(Atom.to_string(&1), "cluster_scope_"))
      assert ClusterScope.Operations.ProcessList.Arsenal.name() == :cluster_scope_process_list
      assert ClusterScope.TestOps.EchoV2.Arsenal.name() == :cluster_scope_test_echo_v2
      assert names -- @builtin_names == names

      routes = for {_, face} <- faces, do: {face.rest_config().method, face.rest_config().path}
      assert Enum.uniq(routes) == routes
      assert Enum.all?(routes, fn {_, path} -> path not in @builtin_paths end)

      # ClusterScope's own routes are unchanged.
      assert ClusterScope.Operations.ProcessList.rest_config().path == "/api/v1/cluster/processes"

      assert ClusterScope.Operations.ProcessList.Arsenal.rest_config().path ==
               "/api/v1/cluster_scope/cluster/processes"
    end

    test "mutating and sensitive faces require authentication, read ones do not" do
      for meta <- ops() do
        {:ok, face} = Face.of(meta.module)
        guarded = meta.mutating or meta.scope != :read
        assert face.metadata().requires_authentication == guarded, meta.name
        assert function_exported?(face, :authorize, 2)
        assert face.metadata().timeout <= 4_000
      end

      for name <- @guarded, do: assert(Enum.find(ops(), &(&1.name == name)).scope != :read)
    end
  end

  describe "register_all/1" do
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
      assert report.names[MyApp.Ops.Greet] == :cluster_scope_greet

      # (With ERL_LIBS pointing at Horde, its requirement is met.)
      unless Code.ensure_loaded?(Horde.Registry) do
        assert %{reason: reason} =
                 Enum.find(report.skipped, &(&1.module == ClusterScope.TestOps.NeedsHorde))

        assert reason =~ "Horde"
      end

      held = Map.new(Arsenal.Registry.list_operations(), &{&1.name, &1.module})

      for module <- report.registered do
        assert held[report.names[module]] == Module.concat(module, "Arsenal")
      end

      assert map_size(held) == length(report.registered)
    end

    test "by default the bridge registers no mutation and nothing sensitive" do
      start_supervised!(StandIn)
      assert {:ok, report} = ClusterScope.Arsenal.register_all(registry: StandIn)

      for module <- report.registered do
        {:ok, meta} = ClusterScope.Operation.meta(module)
        refute meta.mutating, "#{meta.name} is mutating"
        assert meta.scope == :read, "#{meta.name} has scope #{meta.scope}"
      end

      held = for %{module: m} <- StandIn.list_operations(), do: m.__cluster_scope_face__()

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
        refute module in held
        assert %{reason: reason} = Enum.find(report.skipped, &(&1.module == module))
        assert reason =~ "allow:"
      end
    end

    test "mutations and sensitive operations listed in allow: are registered, exactly those" do
      start_supervised!(StandIn)
      {:ok, default} = ClusterScope.Arsenal.register_all(registry: StandIn)

      {:ok, report} =
        ClusterScope.Arsenal.register_all(
          registry: StandIn,
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

      {:ok, ro} =
        ClusterScope.Arsenal.register_all(
          registry: StandIn,
          read_only: true,
          allow: ["test_mutate"]
        )

      refute ClusterScope.TestOps.Mutate in ro.registered

      assert %{reason: reason} =
               Enum.find(ro.skipped, &(&1.module == ClusterScope.TestOps.Mutate))

      assert reason =~ "read-only"
    end

    test "an unknown name in allow: or a bad option is an error and nothing is registered" do
      start_supervised!(StandIn)

      assert {:error, {:unknown_operations, ["kill_everything", "rm_rf"]}} =
               ClusterScope.Arsenal.register_all(
                 registry: StandIn,
                 allow: ["kill_process", "rm_rf", "kill_everything"]
               )

      assert {:error, {:unknown_operations, ["42"]}} =
               ClusterScope.Arsenal.register_all(registry: StandIn, allow: [:kill_process, 42])

      assert {:error, {:invalid_option, :deadline_ms, why}} =
               ClusterScope.Arsenal.register_all(registry: StandIn, deadline_ms: 5_000)

      assert why =~ "5 s"

      assert {:error, {:invalid_option, :authorize, _}} =
               ClusterScope.Arsenal.register_all(registry: StandIn, authorize: "yes")

      assert StandIn.list_operations() == []
    end

    test "nothing registered is an error, with the report" do
      assert {:error, {:nothing_registered, report}} =
               ClusterScope.Arsenal.register_all(registry: ClusterScope.ArsenalTest.Refusing)

      assert report.registered == []
      assert %{reason: ":refused"} = hd(report.failed)
    end

    test "a name or a route held by another module is not replaced" do
      start_supervised!(StandIn)
      {:ok, _} = StandIn.register_operation(ClusterScope.ArsenalTest.Holder)
      {:ok, _} = StandIn.register_operation(ClusterScope.ArsenalTest.RouteHolder)

      assert {:ok, report} = ClusterScope.Arsenal.register_all(registry: StandIn)

      assert %{reason: reason} =
               Enum.find(report.failed, &(&1.module == ClusterScope.Operations.NodeBuildInfo))

      assert reason =~ "held by ClusterScope.ArsenalTest.Holder"

      assert %{reason: reason} =
               Enum.find(report.failed, &(&1.module == ClusterScope.Operations.ClusterTopology))

      assert reason =~ "GET /api/v1/cluster_scope/cluster/topology"

      assert {:ok, %{module: ClusterScope.ArsenalTest.Holder}} =
               StandIn.get_operation(:cluster_scope_node_build_info)
    end

    test "unregister_all/1 removes the faces and only them" do
      start_supervised!(StandIn)
      {:ok, _} = StandIn.register_operation(ClusterScope.ArsenalTest.RouteHolder)
      {:ok, report} = ClusterScope.Arsenal.register_all(registry: StandIn)

      assert {:ok, removed} = ClusterScope.Arsenal.unregister_all(registry: StandIn)
      assert Enum.sort(removed) == Enum.sort(Map.values(report.names))
      assert [%{module: ClusterScope.ArsenalTest.RouteHolder}] = StandIn.list_operations()
    end

    test "the registry of the application Arsenal came from is found too" do
      start_supervised!(OTPSupervisor.Core.Arsenal.Registry)
      assert ClusterScope.Arsenal.find_registry() == OTPSupervisor.Core.Arsenal.Registry

      assert {:ok, report} = ClusterScope.Arsenal.register_all()
      assert report.registry == OTPSupervisor.Core.Arsenal.Registry
      assert ClusterScope.Operations.NodeBuildInfo in report.registered
      assert length(OTPSupervisor.Core.Arsenal.Registry.list_operations()) > 5
    end
  end

  describe "execution through the registry" do
    setup do
      start_supervised!(StandIn)

      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn, allow: ["kill_process"])

      :ok
    end

    test "the same answer as ClusterScope.run/2" do
      params = %{"name" => "ada", "shout" => "true"}

      assert {:ok, data} = StandIn.execute_operation(:cluster_scope_greet, params)
      assert {:ok, data} == ClusterScope.run("greet", params)
      assert %{greeting: "HELLO, ADA" <> _} = data

      node_params = %{"node" => Atom.to_string(node())}

      assert StandIn.execute_operation(:cluster_scope_node_build_info, node_params) ==
               ClusterScope.run("node_build_info", node_params)

      assert StandIn.execute_operation(:cluster_scope_test_echo_v2, %{"text" => "x"}) ==
               ClusterScope.run("test_echo", %{"text" => "x"}, version: 2)
    end

    test "errors reach Arsenal's adapter as the shape it maps: 4xx as text, 5xx as the error" do
      # A bad parameter: refused by validate_params/1 before execute/1.
      assert {:error, "invalid_params: " <> text} =
               StandIn.execute_operation(:cluster_scope_greet, %{})

      assert text =~ "name"

      # A raise inside the operation (500 in ClusterScope): the error itself.
      assert {:error, %ClusterScope.Error{code: :internal, message: "boom"}} =
               Face.execute(ClusterScope.TestOps.Fail, %{"how" => "raise"})

      # Not found (404 in ClusterScope): text.
      assert {:error, "not_found: no such thing"} =
               Face.execute(ClusterScope.TestOps.Fail, %{"how" => "not_found"})

      # A missing requirement (503 in ClusterScope): the error itself.
      unless Code.ensure_loaded?(Horde.Registry) do
        assert {:error, %ClusterScope.Error{code: :unavailable}} =
                 Face.execute(ClusterScope.TestOps.NeedsHorde, %{})
      end
    end

    test "a slow operation ends with ClusterScope's timeout before Arsenal's 5 s" do
      started = System.monotonic_time(:millisecond)

      assert {:error, %ClusterScope.Error{code: :timeout, message: message}} =
               StandIn.execute_operation(:cluster_scope_test_slow, %{})

      elapsed = System.monotonic_time(:millisecond) - started
      assert elapsed < 5_000, "took #{elapsed} ms"
      assert message =~ "4000 ms"
      # The registry is alive and serves the next call.
      assert {:ok, _} = StandIn.execute_operation(:cluster_scope_process_list, %{"limit" => "1"})
    end

    test "a shorter deadline is honoured" do
      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn, deadline_ms: 300)

      assert {:error, %ClusterScope.Error{code: :timeout, details: %{timeout_ms: 300}}} =
               StandIn.execute_operation(:cluster_scope_process_list, %{"window_ms" => "2000"})
    end
  end

  describe "authority" do
    setup do
      start_supervised!(StandIn)
      victim = spawn(fn -> Process.sleep(:infinity) end)
      on_exit(fn -> Process.exit(victim, :kill) end)
      %{victim: victim, params: %{"pid" => inspect(victim)}}
    end

    test "a mutation without authority is refused", %{victim: victim, params: params} do
      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn, allow: ["kill_process"])

      assert StandIn.execute_operation(:cluster_scope_kill_process, params) ==
               {:error, :unauthorized}

      assert StandIn.execute_operation(:cluster_scope_kill_process, params, %{
               cluster_scope_token: "not-the-token-at-all"
             }) == {:error, :unauthorized}

      # Arsenal.execute_operation/2 and its adapter call execute/1 without
      # authorize/2: refused too.
      face = ClusterScope.Operations.KillProcess.Arsenal
      assert {:ok, ^params} = face.validate_params(params)
      assert {:error, "unauthorized: " <> _} = face.execute(params)

      assert Process.alive?(victim)
    end

    test "ClusterScope's admin token in the context grants it", %{victim: victim, params: params} do
      token = "an-admin-token-of-32-characters!"
      previous = Application.get_env(:cluster_scope, :http)

      on_exit(fn ->
        if previous,
          do: Application.put_env(:cluster_scope, :http, previous),
          else: Application.delete_env(:cluster_scope, :http)

        ClusterScope.Config.load()
      end)

      Application.put_env(:cluster_scope, :http, token: token)
      ClusterScope.Config.load()
      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn, allow: ["kill_process"])

      # A grant is for these params only.
      other = %{"pid" => inspect(self())}
      face = ClusterScope.Operations.KillProcess.Arsenal
      assert :ok = face.authorize(params, %{cluster_scope_token: token})
      assert {:error, "unauthorized: " <> _} = face.execute(other)
      assert Process.alive?(self())

      assert {:ok, %{exited: true}} =
               StandIn.execute_operation(:cluster_scope_kill_process, params, %{
                 cluster_scope_token: token
               })

      refute Process.alive?(victim)
    end

    test "the host's authorizer grants it, and sees what is asked", %{victim: victim} = ctx do
      test = self()

      authorize = fn request ->
        send(test, {:asked, request})
        if request.context[:role] == :operator, do: :ok, else: {:error, :no}
      end

      {:ok, _} =
        ClusterScope.Arsenal.register_all(
          registry: StandIn,
          allow: ["kill_process"],
          authorize: authorize
        )

      assert {:error, :unauthorized} =
               StandIn.execute_operation(:cluster_scope_kill_process, ctx.params, %{role: :viewer})

      assert_received {:asked, %{operation: "kill_process", scope: :control, mutating: true}}
      assert Process.alive?(victim)

      assert {:ok, _} =
               StandIn.execute_operation(:cluster_scope_kill_process, ctx.params, %{
                 role: :operator
               })

      refute Process.alive?(victim)
    end

    test "an authorizer that raises refuses", ctx do
      {:ok, _} =
        ClusterScope.Arsenal.register_all(
          registry: StandIn,
          allow: ["kill_process"],
          authorize: fn _ -> raise "boom" end
        )

      assert {:error, :unauthorized} =
               StandIn.execute_operation(:cluster_scope_kill_process, ctx.params, %{})

      assert Process.alive?(ctx.victim)
    end

    test "with a read_token configured, read operations need it (or the admin token), as over HTTP" do
      token = "an-admin-token-of-32-characters!"
      read_token = "a-read-token-of-32-characters!!"
      previous = Application.get_env(:cluster_scope, :http)

      on_exit(fn ->
        if previous,
          do: Application.put_env(:cluster_scope, :http, previous),
          else: Application.delete_env(:cluster_scope, :http)

        ClusterScope.Config.load()
      end)

      Application.put_env(:cluster_scope, :http, token: token, read_token: read_token)
      ClusterScope.Config.load()
      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn)
      params = %{"node" => Atom.to_string(node())}
      face = ClusterScope.Operations.NodeBuildInfo.Arsenal
      assert face.metadata().requires_authentication

      assert StandIn.execute_operation(:cluster_scope_node_build_info, params) ==
               {:error, :unauthorized}

      assert {:error, "unauthorized: " <> _} = face.execute(params)

      for t <- [read_token, token] do
        assert {:ok, _} =
                 StandIn.execute_operation(:cluster_scope_node_build_info, params, %{
                   cluster_scope_token: t
                 })
      end
    end

    test "read operations need no authority" do
      {:ok, _} = ClusterScope.Arsenal.register_all(registry: StandIn)

      assert {:ok, _} =
               StandIn.execute_operation(:cluster_scope_node_build_info, %{
                 "node" => Atom.to_string(node())
               })
    end
  end

  describe "the keeper" do
    test "registers once the registry runs, and again after the registry restarts" do
      keeper =
        start_supervised!(
          {ClusterScope.Arsenal, registry: StandIn, name: :keeper_test, check_ms: 200}
        )

      assert ClusterScope.Arsenal.status(keeper) == :waiting

      # The registry starts after the keeper.
      start_supervised!(StandIn)
      assert eventually(fn -> match?({:ok, _}, ClusterScope.Arsenal.status(keeper)) end)
      {:ok, report} = ClusterScope.Arsenal.status(keeper)
      assert {:ok, _} = StandIn.get_operation(:cluster_scope_node_build_info)

      # A restarted registry starts empty: everything comes back.
      old = Process.whereis(StandIn)
      Process.exit(old, :kill)

      assert eventually(fn ->
               is_pid(Process.whereis(StandIn)) and Process.whereis(StandIn) != old
             end)

      assert eventually(fn -> length(StandIn.list_operations()) == length(report.registered) end)

      # An entry removed by someone else comes back at the next check.
      :ok = StandIn.unregister_operation(:cluster_scope_greet)
      assert eventually(fn -> match?({:ok, _}, StandIn.get_operation(:cluster_scope_greet)) end)
    end

    test "bad options are logged and the keeper does not start" do
      assert ClusterScope.Arsenal.start_link(registry: StandIn, allow: ["nope"], name: :bad) ==
               :ignore
    end
  end

  defp eventually(fun, tries \\ 100) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(50) && eventually(fun, tries - 1)
    end
  end
end
