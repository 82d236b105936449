defmodule ClusterScope.CLI.OperatorsTest do
  # The operators' commands against 3 real nodes, attached to one of them
  # with --node as an operator's shell would be: a batch over nodes, a check
  # script, and the cluster's logs merged by time (and followed).
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag :tmp_dir
  @moduletag timeout: 180_000

  setup_all do
    peers = Cluster.start(3)
    on_exit(fn -> Cluster.cleanup(peers) end)
    [a, _, _] = peers

    Cluster.await_run(
      a,
      "cluster_topology",
      &(length(&1.agents) >= 3 and &1.classification.status == :healthy),
      15_000
    )

    %{peers: peers}
  end

  defp out({code, io}), do: {code, IO.iodata_to_binary(io)}
  defp attach(peer), do: ["--node", Atom.to_string(peer.node)]

  describe "batch" do
    test "--all and --nodes run the operation on each node, one row each", %{peers: [a, b, c]} do
      {0, text} = out(ClusterScope.CLI.main(["node_build_info", "--all" | attach(a)]))
      for p <- [a, b, c], do: assert(text =~ ~r/#{Regex.escape(to_string(p.node))}\s+ok\s+/)
      assert text =~ ~r/\d+\/\d+ nodes succeeded/

      {0, text} =
        out(
          ClusterScope.CLI.main([
            "node_resources",
            "--nodes",
            "#{a.node},#{b.node}",
            "--json" | attach(a)
          ])
        )

      {:ok, rows} = ClusterScope.JSON.decode(text)
      assert Enum.map(rows, & &1["node"]) == [to_string(a.node), to_string(b.node)]
      # Each node was asked about itself (the operation's `node` left out).
      assert Enum.all?(rows, &(&1["ok"] and &1["metadata"]["node"] == &1["node"]))
    end

    test "a node that fails makes the exit status 1 and shows its error", %{peers: [a, b, _]} do
      :ok =
        Cluster.call(b, Supervisor, :terminate_child, [
          ClusterScope.Supervisor,
          ClusterScope.Health.Monitor
        ])

      on_exit(fn ->
        Cluster.call(b, Supervisor, :restart_child, [
          ClusterScope.Supervisor,
          ClusterScope.Health.Monitor
        ])
      end)

      {1, text} =
        out(
          ClusterScope.CLI.main(["node_resources", "--nodes", "#{a.node},#{b.node}" | attach(a)])
        )

      assert text =~ ~r/#{Regex.escape(to_string(a.node))}\s+ok/
      assert text =~ ~r/#{Regex.escape(to_string(b.node))}\s+error\s+unavailable/
      assert text =~ "1/2 nodes succeeded"
    end

    test "an unknown node is a usage error naming it; no atom is made", %{peers: [a | _]} do
      name = "nosuch#{System.unique_integer([:positive])}@127.0.0.1"
      {2, text} = out(ClusterScope.CLI.main(["node_build_info", "--nodes", name | attach(a)]))
      assert text =~ "Unknown or unconnected node(s): #{name}"
      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    end
  end

  describe "scripts" do
    test "checks pass and fail with the exit status a CI job needs", %{
      peers: [a, b, c],
      tmp_dir: dir
    } do
      good = Path.join(dir, "good.exs")

      File.write!(good, """
      wait_until("three nodes up", 10_000, fn -> length(nodes_up()) >= 3 end)
      assert_no_alerts(:critical)
      assert_no_process(%{min_queue: 1_000_000})
      check("#{b.node} and #{c.node} are in the topology", fn ->
        agents = Enum.map(topology().agents, &to_string/1)
        "#{b.node}" in agents and "#{c.node}" in agents
      end)
      """)

      lines = collect(fn emit -> ClusterScope.Script.CLI.main([good | attach(a)], emit) end)
      assert {0, summary} = lines.result
      assert summary =~ "4/4 checks passed"
      assert lines.emitted =~ "ok   three nodes up"

      bad = Path.join(dir, "bad.exs")

      File.write!(bad, """
      assert_nodes(2)
      check("raises inside", fn -> raise "boom" end)
      assert_no_process(%{min_queue: 0})
      """)

      lines = collect(fn emit -> ClusterScope.Script.CLI.main([bad | attach(a)], emit) end)
      assert {1, summary} = lines.result
      assert summary =~ "0/3 checks passed"
      assert lines.emitted =~ ~r/FAIL 2 nodes up: \d+ up: /
      assert lines.emitted =~ "FAIL raises inside: boom"
      assert lines.emitted =~ "FAIL no process with %{min_queue: 0}: 0."

      raising = Path.join(dir, "raising.exs")
      File.write!(raising, "assert_healthy()\nrun!(\"no_such_operation\", %{})\n")
      lines = collect(fn emit -> ClusterScope.Script.CLI.main([raising | attach(a)], emit) end)
      assert {2, text} = lines.result
      assert text =~ "the script raised outside a check"
      assert text =~ "not_found"

      assert {2, _} = ClusterScope.Script.CLI.main([Path.join(dir, "missing.exs")])
    end
  end

  describe "logs" do
    test "events of every node merged by time, filtered by level, node, module and text",
         %{peers: [a, b, c]} do
      token = "tok#{System.unique_integer([:positive])}"

      :ok =
        Cluster.call(a, :logger, :log, [
          :warning,
          ~c"first #{token}",
          %{mfa: {ClusterScope.Test.Cart, :add, 2}}
        ])

      Process.sleep(5)

      :ok =
        Cluster.call(b, :logger, :log, [:error, ~c"second #{token}", %{mfa: {:cart_erl, :add, 2}}])

      Process.sleep(5)
      :ok = Cluster.call(c, :logger, :log, [:info, ~c"third #{token}", %{}])

      %{result: {0, _}, emitted: text} =
        collect(&ClusterScope.Logs.CLI.main(["--grep", token | attach(a)], &1, 1))

      lines = text |> String.split("\n", trim: true) |> Enum.filter(&(&1 =~ token))
      assert length(lines) == 3

      assert Enum.map(lines, &(&1 |> String.split(" ") |> Enum.at(1))) ==
               Enum.map([a, b, c], &to_string(&1.node))

      %{result: {0, _}, emitted: text} =
        collect(
          &ClusterScope.Logs.CLI.main(["--grep", token, "--level", "warning" | attach(a)], &1, 1)
        )

      assert text =~ "second #{token}"
      refute text =~ "third"

      {:ok, %{events: events}} =
        Cluster.call(a, ClusterScope, :run, [
          "cluster_logs",
          %{
            contains: token,
            modules: ["ClusterScope.Test."],
            nodes: [to_string(a.node), to_string(c.node)]
          }
        ])

      assert [%{node: node, module: "ClusterScope.Test.Cart", function: "add/2", level: :warning}] =
               events

      assert node == a.node

      {:ok, %{events: [%{module: "cart_erl"}]}} =
        Cluster.call(a, ClusterScope, :run, [
          "cluster_logs",
          %{contains: token, modules: ["cart_erl"]}
        ])
    end

    test "--follow prints only what came after, from every node", %{peers: [a, b, _]} do
      token = "fol#{System.unique_integer([:positive])}"
      parent = self()

      follower =
        Task.async(fn ->
          ClusterScope.Logs.CLI.main(
            ["--grep", token, "--follow", "--interval-ms", "200" | attach(a)],
            &send(parent, {:emitted, IO.iodata_to_binary(&1)}),
            25
          )
        end)

      Process.sleep(600)
      :ok = Cluster.call(b, :logger, :log, [:warning, ~c"one #{token}", %{}])
      Process.sleep(700)
      :ok = Cluster.call(a, :logger, :log, [:warning, ~c"two #{token}", %{}])

      assert {0, _} = Task.await(follower, 30_000)
      text = drain("")
      assert length(Regex.scan(~r/one #{token}/, text)) == 1
      assert length(Regex.scan(~r/two #{token}/, text)) == 1
      assert :binary.match(text, "one #{token}") < :binary.match(text, "two #{token}")
    end

    test "reading logs needs the sensitive scope over HTTP, and bad input names the field" do
      {:error, error} = ClusterScope.run("cluster_logs", %{cursor: "!!"})
      assert error.code == :invalid_params
      assert [%{field: "cursor"}] = error.details.fields

      {:error, error} = ClusterScope.run("cluster_logs", %{level: "loud"})
      assert [%{field: "level"}] = error.details.fields

      assert {:ok, meta} = ClusterScope.Operation.Registry.lookup("cluster_logs")
      assert meta.scope == :sensitive
    end
  end

  defp collect(fun) do
    parent = self()
    result = fun.(&send(parent, {:emitted, IO.iodata_to_binary(&1)}))
    %{result: out(result), emitted: drain("")}
  end

  defp drain(acc) do
    receive do
      {:emitted, text} -> drain(acc <> text)
    after
      0 -> acc
    end
  end
end
