defmodule ClusterScope.FeaturesTest do
  # Feature flags per area and the profiles' defaults, through the same
  # runner every surface uses.
  use ExUnit.Case, async: false

  alias ClusterScope.Config

  setup do
    saved = Application.get_all_env(:cluster_scope)

    on_exit(fn ->
      for {k, _} <- Application.get_all_env(:cluster_scope),
          do: Application.delete_env(:cluster_scope, k)

      for {k, v} <- saved, do: Application.put_env(:cluster_scope, k, v)
      Config.load()
    end)
  end

  defp put(key, value) do
    Application.put_env(:cluster_scope, key, value)
    Config.load()
  end

  test "a switched-off area's operations are listed unavailable and refused with the option named" do
    put(:features, tracing: false)

    assert {:error, error} = ClusterScope.run("trace_process", %{process: inspect(self())})
    assert error.code == :unavailable
    assert error.message =~ "features: [tracing: false]"

    {:ok, %{operations: ops}} = ClusterScope.operations()
    trace = Enum.find(ops, &(&1.name == "list_trace_sessions"))
    assert trace.available == false and trace.unavailable_reason =~ "tracing is switched off"

    # Other areas are untouched.
    assert Enum.find(ops, &(&1.name == "kill_process")).available
    assert {:ok, _} = ClusterScope.run("list_sandboxes", %{})

    put(:features, sandboxes: false, process_control: false)
    assert {:error, %{code: :unavailable}} = ClusterScope.run("list_sandboxes", %{})

    assert {:error, %{code: :unavailable}} =
             ClusterScope.run("kill_process", %{pid: "0.1.0@#{node()}"})

    assert {:ok, _} = ClusterScope.run("list_trace_sessions", %{})
  end

  test "bad feature flags are named and fall back to everything on" do
    put(:features, tracing: :maybe, teleport: true)
    assert [{:features, message}] = Config.errors()
    assert message =~ "teleport"
    assert ClusterScope.Features.enabled?(:tracing)
  end

  test "the production profile: read-only without a token, tracing capped; explicit options win" do
    put(:profile, :production)
    assert Config.profile() == :production
    assert Config.get(:http)[:read_only] == true
    assert Config.get(:trace_max_rate) == 5_000

    put(:http, token: String.duplicate("k", 20))
    assert Config.get(:http)[:read_only] == false

    put(:http, read_only: false)
    assert Config.get(:http)[:read_only] == false

    put(:trace_max_rate, 20_000)
    assert Config.get(:trace_max_rate) == 20_000

    put(:profile, :development)
    Application.delete_env(:cluster_scope, :trace_max_rate)
    Config.load()
    assert Config.get(:trace_max_rate) == 100_000
    assert Config.get(:http)[:read_only] == false
  end

  test "a trace asking more than the node's cap is refused naming rate" do
    put(:trace_max_rate, 300)

    assert {:error, error} =
             ClusterScope.run("trace_process", %{
               process: ClusterScope.ProcessRef.to_string(self()),
               messages: "both",
               rate: 301
             })

    assert error.code == :invalid_params
    assert [%{field: "rate", message: message}] = error.details.errors
    assert message =~ "at most 300"
  end
end
