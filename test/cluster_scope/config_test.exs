defmodule ClusterScope.ConfigTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias ClusterScope.Config

  test "defaults validate" do
    assert {:ok, config} = Config.validate([])
    assert config == Config.defaults()
    assert config.node_timeout_ms == 5_000
    assert config.native_path == nil
  end

  test "valid options are taken" do
    assert {:ok, %{node_timeout_ms: 250, native_path: "/opt/x"}} =
             Config.validate(node_timeout_ms: 250, native_path: "/opt/x")
  end

  test "startable_modules: none by default, a list of module names" do
    assert Config.defaults().startable_modules == []

    assert {:ok, %{startable_modules: [Agent, :queue]}} =
             Config.validate(startable_modules: [Agent, :queue])

    for bad <- [Agent, ["Agent"], [nil], [1]] do
      assert {:error, _, [{:startable_modules, msg}]} = Config.validate(startable_modules: bad)
      assert msg =~ "module names"
    end
  end

  test "each bad option is named, and falls back to its default" do
    assert {:error, config, errors} =
             Config.validate(node_timeout_ms: 0, native_path: 42, bogus: true)

    assert config == Config.defaults()
    assert {:node_timeout_ms, msg} = List.keyfind(errors, :node_timeout_ms, 0)
    assert msg =~ "0" and msg =~ "1..600000"
    assert {:native_path, msg} = List.keyfind(errors, :native_path, 0)
    assert msg =~ "42"
    assert {:bogus, msg} = List.keyfind(errors, :bogus, 0)
    assert msg =~ "not a ClusterScope option" and msg =~ ":node_timeout_ms"
  end

  test "load/0 logs bad options and keeps the application's defaults" do
    Application.put_env(:cluster_scope, :node_timeout_ms, "soon")

    try do
      log = capture_log(fn -> Config.load() end)
      assert log =~ "option :node_timeout_ms"
      assert log =~ ~s("soon")
      assert Config.get(:node_timeout_ms) == 5_000
      assert [{:node_timeout_ms, _}] = Config.errors()
    after
      Application.delete_env(:cluster_scope, :node_timeout_ms)
      Config.load()
    end

    assert Config.errors() == []
  end

  test "http options: defaults, overrides and named errors" do
    assert {:ok, %{http: http}} = Config.validate(http: [port: 0, token: "0123456789abcdef"])
    assert http[:port] == 0 and http[:ip] == {127, 0, 0, 1} and http[:enabled] == false
    assert http[:max_body_bytes] == 1_048_576

    assert {:error, _, [{:http, msg}]} = Config.validate(http: [port: 70_000])
    assert msg =~ "port" and msg =~ "0..65535"
    assert {:error, _, [{:http, msg}]} = Config.validate(http: [token: "short"])
    assert msg =~ "16 bytes"
    assert {:error, _, [{:http, msg}]} = Config.validate(http: [listen: true])
    assert msg =~ "not an http option"
  end

  test "an endpoint that cannot bind its port leaves ClusterScope running" do
    {:ok, blocker} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(blocker)
    assert {:error, _} = ClusterScope.Web.Endpoint.start(port: port)
    assert Process.whereis(ClusterScope.Supervisor) |> Process.alive?()
    :gen_tcp.close(blocker)
  end
end
