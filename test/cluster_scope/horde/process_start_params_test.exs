defmodule ClusterScope.Horde.ProcessStartParamsTest do
  # HordeProcessStart's own checks, with or without Horde: every
  # Horde-specific parameter is validated, errors name the field, and no
  # atom is made from input.
  # Changes the node's configuration (startable_modules): not async.
  use ExUnit.Case, async: false

  alias ClusterScope.Operations.HordeProcessStart, as: Op

  setup do
    previous = Application.fetch_env(:cluster_scope, :startable_modules)
    Application.put_env(:cluster_scope, :startable_modules, [Agent, :erlang])
    ClusterScope.Config.load()

    on_exit(fn ->
      case previous do
        {:ok, value} -> Application.put_env(:cluster_scope, :startable_modules, value)
        :error -> Application.delete_env(:cluster_scope, :startable_modules)
      end

      ClusterScope.Config.load()
    end)
  end

  defp validate(extra) do
    base = %{
      "supervisor" => "S",
      "module" => "Agent",
      "args" => [%{"$atom" => "erlang"}, %{"$atom" => "make_ref"}, []]
    }

    Op.validate_params(Map.merge(base, extra))
  end

  defp fields({:error, fields}), do: Enum.map(fields, & &1.field)

  test "a valid request: module, function and args resolved to existing terms" do
    assert {:ok, params} =
             validate(%{"args" => [%{"$atom" => "erlang"}, %{"$atom" => "make_ref"}, []]})

    assert params.module == Agent and params.function == :start_link
    assert params.args == [:erlang, :make_ref, []]
    assert params.restart == :permanent and params.timeout_ms == 5_000
  end

  test "placement: node and nodes exclude each other; strategy horde/local exclude nodes" do
    me = Atom.to_string(node())
    assert "nodes" in fields(validate(%{"node" => me, "nodes" => [me]}))
    assert "strategy" in fields(validate(%{"node" => me, "strategy" => "local"}))
    assert "strategy" in fields(validate(%{"nodes" => [me], "strategy" => "horde"}))
    assert {:ok, _} = validate(%{"nodes" => [me], "strategy" => "least_loaded"})
    assert "strategy" in fields(validate(%{"strategy" => "everywhere"}))
    assert "node" in fields(validate(%{"node" => "nobody@nowhere"}))
    assert "nodes" in fields(validate(%{"nodes" => []}))
  end

  test "module, function and args must name existing things; no atom is made" do
    n = System.unique_integer([:positive])
    module = "No.Such.Mod#{n}"
    assert fields(validate(%{"module" => module})) == ["module"]
    assert fields(validate(%{"module" => ""})) == ["module"]
    assert fields(validate(%{"function" => "nope_#{n}"})) == ["function"]
    # Agent.start_link/3 exists, /5 does not.
    assert fields(validate(%{"args" => [1, 2, 3, 4, 5]})) == ["function"]
    assert fields(validate(%{"args" => %{"a" => 1}})) == ["args"]
    assert fields(validate(%{"args" => [%{"$atom" => "no_atom_#{n}"}]})) == ["args"]
    assert "timeout_ms" in fields(validate(%{"timeout_ms" => 1}))
    assert "restart" in fields(validate(%{"restart" => "sometimes"}))

    for text <- [module, "Elixir." <> module, "nope_#{n}", "no_atom_#{n}"] do
      assert_raise ArgumentError, fn -> String.to_existing_atom(text) end
    end
  end

  test "an Erlang module is written with a colon" do
    assert {:ok, %{module: :erlang, function: :make_ref}} =
             validate(%{"module" => ":erlang", "function" => "make_ref", "args" => []})
  end

  test "only the modules the host lists in startable_modules are started, whoever asks" do
    # Task.start_link/3 exists and runs any function: it is not listed.
    assert {:error, [%{field: "module", message: message}]} =
             validate(%{
               "module" => "Task",
               "args" => [%{"$atom" => "os"}, %{"$atom" => "getpid"}, []]
             })

    assert message =~ "startable_modules"

    Application.put_env(:cluster_scope, :startable_modules, [])
    ClusterScope.Config.load()
    assert fields(validate(%{})) == ["module"]
  end
end
