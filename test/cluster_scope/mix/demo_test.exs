defmodule Mix.Tasks.ClusterScope.DemoTest do
  # `make demo` runs this task: real nodes, printed with their build info,
  # and the HTTP API answering for the whole cluster once it says ready.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.HTTP

  @moduletag :cluster
  @moduletag timeout: 180_000

  test "the demo starts real nodes, prints their builds and serves the API" do
    port = HTTP.free_port()

    mix = System.find_executable("mix")

    demo =
      Port.open({:spawn_executable, mix}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 4096},
        args: ["cluster_scope.demo", "--nodes", "2", "--port", Integer.to_string(port)],
        env: [{~c"MIX_ENV", ~c"test"}, {~c"CLUSTER_SCOPE_TOKEN", ~c"demo-token-0123456789"}]
      ])

    {:os_pid, os_pid} = Port.info(demo, :os_pid)
    on_exit(fn -> System.cmd("kill", ["-9", "#{os_pid}"], stderr_to_stdout: true) end)

    lines = read_until(demo, "ClusterScope demo ready", [], 120_000)
    core = ClusterScope.Native.build_info().core_version

    assert Enum.any?(lines, &(&1 =~ "demo cluster: 3 nodes"))
    node_lines = Enum.filter(lines, &(&1 =~ "core #{core} nif 2.15"))
    assert length(node_lines) == 3, Enum.join(lines, "\n")

    assert List.last(lines) ==
             "ClusterScope demo ready: http://127.0.0.1:#{port} token=demo-token-0123456789"

    # Every demo node is in the topology served by the API.
    assert {200, %{"data" => topology}, _} =
             HTTP.get("http://127.0.0.1:#{port}/api/v1/cluster/topology")

    served = topology["nodes"] |> Enum.map(& &1["node"]) |> Enum.sort()

    printed =
      node_lines |> Enum.map(&(&1 |> String.trim() |> String.split() |> hd())) |> Enum.sort()

    assert served == printed

    # The demo allows mode switching (a production node does not).
    url = "http://127.0.0.1:#{port}/api/v1/cluster/mode"
    auth = [{"authorization", "Bearer demo-token-0123456789"}]

    assert {200, %{"data" => %{"mode" => "simulated", "nodes" => [_, _]}}, _} =
             HTTP.post(url, ~s({"mode": "simulated", "nodes": 2}), headers: auth)

    assert {200, %{"data" => %{"mode" => "multi_node"}}, _} =
             HTTP.post(url, ~s({"mode": "multi_node"}), headers: auth)
  end

  defp read_until(port, marker, acc, timeout) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        acc = [line | acc]
        if line =~ marker, do: Enum.reverse(acc), else: read_until(port, marker, acc, timeout)

      {^port, {:data, {:noeol, _}}} ->
        read_until(port, marker, acc, timeout)

      {^port, {:exit_status, status}} ->
        flunk("the demo exited with #{status}: #{acc |> Enum.reverse() |> Enum.join("\n")}")
    after
      timeout -> flunk("the demo was not ready within #{timeout} ms")
    end
  end
end
