defmodule ClusterScope.ArsenalRealTest.Probe do
  @moduledoc false
  # Modules for comparing the stand-in with the real registry.
  def modules do
    [
      __MODULE__.Whole,
      __MODULE__.NoCategory,
      __MODULE__.NoName,
      __MODULE__.RaisingMetadata,
      No.Such.Probe.Module,
      ClusterScope.Operations.ProcessList,
      ClusterScope.Operations.ProcessList.Arsenal,
      ClusterScope.Operations.KillProcess.Arsenal
    ]
  end

  defmodule Whole do
    @moduledoc false
    def name, do: :cluster_scope_probe_whole
    def category, do: :probe
    def description, do: "whole"
    def params_schema, do: %{x: [type: :integer]}
    def metadata, do: %{a: 1}
    def rest_config, do: %{method: :get, path: "/api/v1/probe/whole"}
    def execute(_), do: {:ok, :ran}
  end

  defmodule NoCategory do
    @moduledoc false
    def name, do: :cluster_scope_probe_no_category
    def execute(_), do: {:ok, :ran}
  end

  defmodule NoName do
    @moduledoc false
    def category, do: :probe
    def execute(_), do: {:ok, :ran}
  end

  defmodule RaisingMetadata do
    @moduledoc false
    def name, do: :cluster_scope_probe_raising
    def category, do: :probe
    def description, do: "raising"
    def params_schema, do: %{}
    def metadata, do: raise(ArgumentError, "no metadata")
    def rest_config, do: %{method: :get, path: "/api/v1/probe/raising"}
    def execute(_), do: {:ok, :ran}
  end
end

defmodule ClusterScope.ArsenalRealTest do
  # Against the real `arsenal` package (nshkrdotcom/arsenal at 1d96ca9, app
  # 0.1.0), run when it is loadable: ERL_LIBS=/path/to/libs mix test.
  use ExUnit.Case, async: false

  @moduletag :arsenal

  alias ClusterScope.ArsenalRealTest.Probe
  alias ClusterScope.Test.ArsenalStandIn

  @registry Arsenal.Registry
  @token "arsenal-real-test-admin-token-0123"

  setup_all do
    previous = Application.get_env(:cluster_scope, :http)
    Application.put_env(:cluster_scope, :http, token: @token)
    ClusterScope.Config.load()

    on_exit(fn ->
      Application.stop(:arsenal)

      if previous,
        do: Application.put_env(:cluster_scope, :http, previous),
        else: Application.delete_env(:cluster_scope, :http)

      ClusterScope.Config.load()
    end)

    :ok
  end

  setup do
    {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)
    {:ok, _} = ClusterScope.register_operation(ClusterScope.Test.SlowOp)

    on_exit(fn ->
      ClusterScope.unregister_operation(MyApp.Ops.Greet)
      ClusterScope.unregister_operation(ClusterScope.Test.SlowOp)
    end)

    # A fresh Arsenal for each test, as a host starts it: its built-ins are
    # registered by its own task ~100 ms after it starts.
    Application.stop(:arsenal)
    {:ok, _} = Application.ensure_all_started(:arsenal)
    assert eventually(fn -> length(reg(:list_operations, [])) >= 20 end)
    %{builtins: Map.new(reg(:list_operations, []), &{&1.name, &1})}
  end

  defp reg(fun, args), do: apply(@registry, fun, args)

  defp guarded_names do
    for {meta, :ok} <- ClusterScope.Operation.Registry.list(),
        meta.mutating or meta.scope != :read,
        do: meta.name
  end

  defp register_everything do
    assert {:ok, report} = ClusterScope.Arsenal.register_all(allow: guarded_names())
    report
  end

  test "the stand-in answers what the real registry answers" do
    for module <- Probe.modules() do
      real = reg(:register_operation, [module])
      stand_in = ArsenalStandIn.operation_info(module)
      assert shape(real) == shape(stand_in), inspect(module)
    end

    # The operation modules themselves are refused, as the stand-in refuses
    # them (finding 0): only the faces register.
    assert {:error, {:invalid_operation, :missing_callbacks}} =
             reg(:register_operation, [ClusterScope.Operations.ProcessList])

    for name <- [
          :cluster_scope_probe_whole,
          :cluster_scope_process_list,
          :cluster_scope_kill_process
        ],
        do: reg(:unregister_operation, [name])
  end

  test "every available operation is registered, Arsenal's built-ins intact", %{
    builtins: builtins
  } do
    report = register_everything()
    assert ClusterScope.Arsenal.find_registry() == @registry
    assert report.failed == []

    available = for {meta, :ok} <- ClusterScope.Operation.Registry.list(), do: meta.module
    assert Enum.sort(report.registered) == Enum.sort(available)

    after_ = Map.new(reg(:list_operations, []), &{&1.name, &1})

    for {name, info} <- builtins do
      assert after_[name].module == info.module, "built-in #{name} was replaced"
      assert after_[name].rest_config == info.rest_config
    end

    for module <- report.registered do
      assert after_[report.names[module]].module == Module.concat(module, "Arsenal")
    end

    assert map_size(after_) == map_size(builtins) + length(report.registered)

    # No two operations share a route.
    routes = for {_, i} <- after_, do: {i.rest_config.method, i.rest_config.path}
    assert Enum.uniq(routes) == routes
  end

  test "each runs through Arsenal.Registry.execute_operation with ClusterScope.run/2's answer" do
    report = register_everything()
    holder = spawn(fn -> Process.sleep(:infinity) end)
    on_exit(fn -> Process.exit(holder, :kill) end)

    # Operations whose answer does not change between two calls.
    stable = [
      {"node_build_info", %{"node" => Atom.to_string(node())}},
      {"greet", %{"name" => "ada"}},
      {"list_operations", %{}},
      {"partition_status", %{}},
      {"cluster_topology", %{}}
    ]

    for {name, params} <- stable do
      {:ok, meta} = ClusterScope.Operation.Registry.lookup(name)
      arsenal_name = report.names[meta.module]
      from_arsenal = reg(:execute_operation, [arsenal_name, params])
      assert {:ok, _} = from_arsenal, "#{name}: #{inspect(from_arsenal, limit: 5)}"
      assert drop_clocks(from_arsenal) == drop_clocks(ClusterScope.run(name, params)), name
    end

    # Process rows change between two calls (memory, reductions): the same
    # process, the same fields.
    params = %{"limit" => "5", "sort_by" => "memory"}
    {:ok, via_arsenal} = reg(:execute_operation, [:cluster_scope_process_list, params])
    {:ok, direct} = ClusterScope.run("process_list", params)
    assert Map.keys(via_arsenal) == Map.keys(direct)
    assert Map.keys(hd(via_arsenal.processes)) == Map.keys(hd(direct.processes))

    # Every registered read operation answers through Arsenal as it does
    # directly (an answer, or the same error code).
    for module <- report.registered,
        {:ok, meta} = ClusterScope.Operation.meta(module),
        not meta.mutating and meta.scope == :read,
        # The slow one has a test of its own.
        module != ClusterScope.Test.SlowOp do
      params = sample_params(meta, holder)
      via = reg(:execute_operation, [report.names[module], params])
      direct = ClusterScope.run(module, params)

      case direct do
        {:ok, data} ->
          assert {:ok, arsenal_data} = via, "#{meta.name}: #{inspect(via, limit: 8)}"
          assert Map.keys(arsenal_data) == Map.keys(data), meta.name

        {:error, %{code: code} = e} ->
          assert ClusterScope.Arsenal.Face.arsenal_error(e) |> error_code() == code
          assert error_code(via) == code, "#{meta.name}: #{inspect(via, limit: 8)}"
      end
    end
  end

  test "a slow operation ends with ClusterScope's timeout, not the registry call's" do
    register_everything()
    pid = Process.whereis(@registry)

    # An operation that takes 6 s (its own timeout allows 10 s).
    started = System.monotonic_time(:millisecond)

    assert {:error, %ClusterScope.Error{code: :timeout, details: %{timeout_ms: 4_000}}} =
             reg(:execute_operation, [:cluster_scope_test_slow, %{}])

    assert System.monotonic_time(:millisecond) - started < 5_000

    # A 6 s process window (a window joins one already under way for
    # process_list, so this one may end sooner: then it answers rows).
    started = System.monotonic_time(:millisecond)

    case reg(:execute_operation, [:cluster_scope_process_list, %{"window_ms" => "6000"}]) do
      {:error, %ClusterScope.Error{code: :timeout}} -> :ok
      {:ok, %{processes: [_ | _]}} -> :ok
    end

    assert System.monotonic_time(:millisecond) - started < 5_000
    # The registry is the same process and has lost nothing.
    assert Process.whereis(@registry) == pid
    assert {:ok, _} = reg(:get_operation, [:cluster_scope_process_list])
    assert {:ok, _} = reg(:get_operation, [:process_list])
  end

  test "a mutation without authority is refused; with ClusterScope's token it runs" do
    register_everything()
    victim = spawn(fn -> Process.sleep(:infinity) end)
    params = %{"pid" => inspect(victim)}

    assert {:error, :unauthorized} =
             reg(:execute_operation, [:cluster_scope_kill_process, params])

    assert {:error, :unauthorized} =
             reg(:execute_operation, [
               :cluster_scope_kill_process,
               params,
               %{cluster_scope_token: "wrong-token-wrong-token-wrong"}
             ])

    # Arsenal.execute_operation/2 (what its adapter calls) skips
    # authorize/2: refused by execute/1 itself.
    assert {:error, "unauthorized: " <> _} =
             apply(Arsenal, :execute_operation, [
               ClusterScope.Operations.KillProcess.Arsenal,
               params
             ])

    assert Process.alive?(victim)

    assert {:ok, %{exited: true}} =
             reg(:execute_operation, [
               :cluster_scope_kill_process,
               params,
               %{cluster_scope_token: @token}
             ])

    refute Process.alive?(victim)
  end

  test "a keeper started before Arsenal: ours and Arsenal's built-ins both end up registered" do
    Application.stop(:arsenal)
    keeper = start_supervised!({ClusterScope.Arsenal, name: :early_keeper, check_ms: 200})
    assert ClusterScope.Arsenal.status(keeper) == :waiting

    {:ok, _} = Application.ensure_all_started(:arsenal)
    # Arsenal's own startup registers its 20 built-ins ~100 ms after it
    # starts, whether ours are in already or not.
    # (Arsenal registers its built-ins one by one: wait for all of them.)
    assert eventually(fn ->
             with {:ok, report} <- ClusterScope.Arsenal.status(keeper) do
               held = Map.new(reg(:list_operations, []), &{&1.name, &1.module})
               map_size(held) == 20 + length(report.registered)
             else
               _ -> false
             end
           end)

    held = Map.new(reg(:list_operations, []), &{&1.name, &1.module})

    for name <- [:process_list, :kill_process, :cluster_health, :cluster_scope_cluster_health],
        do: assert(Map.has_key?(held, name), "#{name} is not registered")

    assert held[:process_list] == Arsenal.Operations.Distributed.ProcessList
    assert held[:cluster_scope_process_list] == ClusterScope.Operations.ProcessList.Arsenal
  end

  test "the keeper registers again after Arsenal's registry restarts" do
    keeper = start_supervised!({ClusterScope.Arsenal, name: :real_keeper, check_ms: 200})
    assert eventually(fn -> match?({:ok, _}, ClusterScope.Arsenal.status(keeper)) end)
    assert {:ok, _} = reg(:get_operation, [:cluster_scope_node_build_info])

    old = Process.whereis(@registry)
    Process.exit(old, :kill)
    assert eventually(fn -> Process.whereis(@registry) not in [nil, old] end)

    assert eventually(fn ->
             match?(
               {:ok, %{module: ClusterScope.Operations.NodeBuildInfo.Arsenal}},
               get(:cluster_scope_node_build_info)
             )
           end)
  end

  defp get(name) do
    reg(:get_operation, [name])
  catch
    :exit, _ -> nil
  end

  defp sample_params(meta, holder) do
    for %{name: name, required: true} = spec <- meta.parameters, into: %{} do
      value =
        case {name, spec.type} do
          {_, :node} -> Atom.to_string(node())
          {:node, _} -> Atom.to_string(node())
          {_, :pid} -> inspect(holder)
          {:pid, _} -> inspect(holder)
          {_, :integer} -> "1"
          _ -> "x"
        end

      {Atom.to_string(name), value}
    end
  end

  defp error_code({:error, "" <> text}),
    do: text |> String.split(":", parts: 2) |> hd() |> String.to_existing_atom()

  defp error_code({:error, %ClusterScope.Error{code: code}}), do: code
  defp error_code(other), do: other

  # Timestamps and durations differ between two calls.
  @clocks [:generated_at, :at, :timestamp, :duration_us, :uptime_ms, :checked_at, :now]
  defp drop_clocks({:ok, data}), do: {:ok, drop_clocks(data)}
  defp drop_clocks(%_{} = s), do: s

  defp drop_clocks(map) when is_map(map),
    do: Map.new(Map.drop(map, @clocks), fn {k, v} -> {k, drop_clocks(v)} end)

  defp drop_clocks(list) when is_list(list), do: Enum.map(list, &drop_clocks/1)
  defp drop_clocks(other), do: other

  defp shape({:ok, info}), do: {:ok, info}
  defp shape({:error, {:module_error, %struct{}}}), do: {:error, {:module_error, struct}}
  defp shape(other), do: other

  defp eventually(fun, tries \\ 100) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(50) && eventually(fun, tries - 1)
    end
  end
end
