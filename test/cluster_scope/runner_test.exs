defmodule ClusterScope.Operation.RunnerTest do
  use ExUnit.Case, async: false

  alias ClusterScope.Error
  alias ClusterScope.Operation.{Registry, Runner}
  alias ClusterScope.TestOps

  setup do
    TestOps.register()
  end

  test "a successful run returns the formatted data and metadata" do
    assert {:ok, data, meta} =
             Runner.run("test_all_types", %{"target" => Atom.to_string(node()), "s" => "abc"})

    assert data == %{target: node(), s: "abc", i: 3}
    assert meta.operation == "test_all_types"
    assert meta.version == 1
    assert meta.node == node()
    assert is_integer(meta.duration_us) and meta.duration_us >= 0
    assert meta.partial == false and meta.node_errors == []
  end

  describe "the error envelope for each failure class" do
    test "invalid_params names every field" do
      assert {:error, %Error{code: :invalid_params} = e, meta} =
               Runner.run("test_all_types", %{"target" => "nobody@nowhere", "i" => "99"})

      assert meta.operation == "test_all_types"
      fields = Enum.map(e.details.fields, & &1.field) |> Enum.sort()
      assert fields == ["i", "target"]
      assert e.message =~ "target" and e.message =~ "i must be at most 10"
      assert [_ | _] = e.remediation
      assert e.cluster.node == node()
      assert is_list(e.cluster.connected_nodes)
      assert e.cluster.mode in ClusterScope.Mode.modes()
    end

    test "not_found: unknown operation, or the operation's own not_found" do
      assert {:error, %Error{code: :not_found}, %{operation: nil}} = Runner.run("no_such_op", %{})

      assert {:error, %Error{code: :not_found, message: "no such thing"}, _} =
               Runner.run("test_fail", %{how: "not_found"})
    end

    test "internal: raise, exit, throw, a strange error and a bad return" do
      assert {:error, %Error{code: :internal, message: "boom"}, _} =
               Runner.run("test_fail", %{how: "raise"})

      assert {:error, %Error{code: :internal, message: msg}, _} =
               Runner.run("test_fail", %{how: "exit"})

      assert msg =~ "bye"

      assert {:error, %Error{code: :internal, message: msg}, _} =
               Runner.run("test_fail", %{how: "throw"})

      assert msg =~ "ball"

      assert {:error, %Error{code: :internal, message: msg}, _} =
               Runner.run("test_fail", %{how: "error"})

      assert msg =~ "strange"

      assert {:error, %Error{code: :internal, message: msg}, _} =
               Runner.run("test_fail", %{how: "bad_return"})

      assert msg =~ ":what"
    end

    test "partition is passed through with its remediation" do
      assert {:error, %Error{code: :partition, remediation: [r | _]}, _} =
               Runner.run("test_fail", %{how: "partition"})

      assert r =~ "partition"
    end

    test "timeout: the operation is killed at its timeout" do
      {time, result} = :timer.tc(fn -> Runner.run("test_fail", %{how: "sleep"}) end)
      assert {:error, %Error{code: :timeout, details: %{timeout_ms: 300}}, _} = result
      assert time < 3_000_000
      # Nothing is left running.
      assert Task.Supervisor.children(ClusterScope.OperationSupervisor) == []
    end

    @tag :no_horde
    test "unavailable: a missing requirement" do
      assert {:error, %Error{code: :unavailable, details: %{reason: reason}}, _} =
               Runner.run("test_needs_horde", %{})

      assert reason =~ "Horde"
    end

    test "node_unavailable from a node error" do
      e = Error.normalize({:node_unavailable, :x@y, :noconnection})
      assert e.code == :node_unavailable and e.details.node == :x@y
      assert Error.http_status(e.code) == 502
    end

    test "every code has a status, a default message and remediation" do
      for code <- Error.codes() do
        e = Error.normalize(code)
        assert e.code == code
        assert is_binary(e.message) and e.message != ""
        assert [_ | _] = e.remediation
        assert Error.http_status(code) in 400..599
      end
    end
  end

  test "the runner refuses work past its concurrency limit instead of queueing" do
    blockers =
      for _ <- 1..64 do
        Task.async(fn -> Runner.run("test_fail", %{how: "sleep"}, timeout: 2_000) end)
      end

    Process.sleep(200)

    assert {:error, %Error{code: :unavailable, message: msg}, _} =
             Runner.run("test_echo", %{text: "x"})

    assert msg =~ "too many operations"
    Enum.each(blockers, &Task.await(&1, 5_000))
    assert {:ok, _, _} = Runner.run("test_echo", %{text: "x"})
  end

  describe "registry" do
    test "built-in operations are discovered without a list" do
      names = for {meta, _} <- Registry.list(), do: meta.name
      assert "list_operations" in names
      assert "node_build_info" in names
    end

    test "hot register and unregister, served on the next call" do
      assert {:error, %Error{code: :not_found}} = ClusterScope.run("greet", %{name: "ada"})
      assert {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)

      assert {:ok, %{greeting: "Hello, ada, from " <> _}} =
               ClusterScope.run("greet", %{name: "ada"})

      :ok = ClusterScope.unregister_operation(MyApp.Ops.Greet)
      assert {:error, %Error{code: :not_found}} = ClusterScope.run("greet", %{name: "ada"})
    end

    test "two versions of one route: latest by default, either on request" do
      assert {:ok, %{echo: "HI", version: 2}} = ClusterScope.run("test_echo", %{text: "hi"})

      assert {:ok, %{echo: "hi", version: 1}} =
               ClusterScope.run("test_echo", %{text: "hi"}, version: 1)

      assert {:ok, %{version: 2}, _} =
               Registry.match(:get, ~w(api v1 test echo))
               |> then(fn {:ok, m, _} -> {:ok, m, nil} end)

      assert {:ok, %{version: 1}, %{}} = Registry.match(:get, ~w(api v1 test echo), 1)
      assert {:error, :not_found} = Registry.match(:get, ~w(api v1 test echo), 7)
    end

    test "conflicts and broken modules are refused with a reason" do
      defmodule Clash do
        use ClusterScope.Operation, name: "test_echo", version: 2

        def rest_config, do: %{method: :get, path: "/api/v1/elsewhere", parameters: []}
        def execute(_), do: {:ok, %{}}
      end

      assert {:error, msg} = ClusterScope.register_operation(Clash)
      assert msg =~ "test_echo v2 is already served"
      assert {:error, msg} = ClusterScope.register_operation(String)
      assert msg =~ "does not implement"
    end

    @tag :no_horde
    test "a requirement-missing operation is listed as unavailable with its reason" do
      {meta, availability} =
        Enum.find(Registry.list(), fn {m, _} -> m.name == "test_needs_horde" end)

      assert meta.requires == [:horde]
      assert {:error, reason} = availability
      assert reason =~ "Horde"
      {:ok, %{operations: ops}} = ClusterScope.operations()
      op = Enum.find(ops, &(&1.name == "test_needs_horde"))
      assert op.available == false and op.unavailable_reason =~ "Horde"
    end

    test "reloading an operation's module refreshes its metadata" do
      source = fn summary ->
        """
        defmodule ClusterScope.TestOps.Reloadable do
          use ClusterScope.Operation, name: "test_reloadable"
          def rest_config, do: %{method: :get, path: "/api/v1/test/reloadable", summary: #{inspect(summary)}, parameters: []}
          def execute(_), do: {:ok, %{}}
        end
        """
      end

      Code.compiler_options(ignore_module_conflict: true)
      Code.compile_string(source.("first"))
      {:ok, _} = ClusterScope.register_operation(ClusterScope.TestOps.Reloadable)
      on_exit(fn -> ClusterScope.unregister_operation(ClusterScope.TestOps.Reloadable) end)
      assert {:ok, %{summary: "first"}} = Registry.lookup("test_reloadable")

      Code.compile_string(source.("second"))
      Code.compiler_options(ignore_module_conflict: false)
      assert {:ok, %{summary: "second"}} = Registry.lookup("test_reloadable")
      assert Enum.any?(Registry.list(), fn {m, _} -> m.summary == "second" end)
    end
  end
end
