defmodule ClusterScope.CLITest do
  use ExUnit.Case, async: false

  alias ClusterScope.CLI
  alias ClusterScope.LocalCluster

  setup do
    {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)
    on_exit(fn -> ClusterScope.unregister_operation(MyApp.Ops.Greet) end)
    :ok
  end

  defp run(args) do
    {code, out} = CLI.main(args)
    {code, IO.iodata_to_binary(out)}
  end

  test "--list is generated from the registry" do
    assert {0, out} = run(["--list"])

    for {meta, _} <- ClusterScope.Operation.Registry.list() do
      assert out =~ meta.name
      assert out =~ meta.path
    end

    assert out =~ "Greets someone"
  end

  test "per-operation help is generated from rest_config" do
    assert {0, out} = run(["greet", "--help"])
    assert out =~ "greet v1: Greets someone from every node of the cluster"
    assert out =~ "GET /api/v1/greet/:name"
    assert out =~ "--name"
    assert out =~ "who to greet"
    assert out =~ "--shout"
    assert out =~ "default false"

    assert {0, out} = run(["node_build_info", "--help"])
    # `node` is also a CLI flag, so the parameter is given with --param.
    assert out =~ "--param node=NODE"
  end

  test "runs in-process with table output, and --json" do
    assert {0, out} = run(["greet", "--name", "ada", "--shout", "true"])
    assert out =~ "greeting: HELLO, ADA, FROM"

    assert {0, json} = run(["greet", "--name", "ada", "--json"])

    assert {:ok,
            %{
              "data" => %{"greeting" => "Hello, ada, from " <> _},
              "metadata" => %{"operation" => "greet"}
            }} = ClusterScope.JSON.decode(String.trim(json))

    assert {0, out} = run(["node_build_info", "--param", "node=#{node()}"])
    assert out =~ "node: #{node()}"
    assert out =~ "core_version:"
  end

  test "a failing operation exits 1 with the error and remediation" do
    assert {1, out} = run(["node_build_info", "--param", "node=nobody@nowhere"])
    assert out =~ "error (invalid_params)"
    assert out =~ "node: must be a known node"
    assert out =~ "->"
  end

  test "usage errors exit 2" do
    assert {2, out} = run(["no_such_operation"])
    assert out =~ "Unknown operation"
    assert {2, out} = run(["greet", "--bogus", "1"])
    assert out =~ "--bogus"
    assert {2, out} = run(["greet", "--param", "nameada"])
    assert out =~ "NAME=VALUE"
  end

  @tag :cluster
  test "--node runs the operation on a peer node" do
    {:ok, peer} = LocalCluster.start_peer(link: true)
    on_exit(fn -> LocalCluster.stop(peer) end)

    :ok =
      LocalCluster.call(peer, :code, :ensure_loaded, [MyApp.Ops.Greet]) |> then(fn _ -> :ok end)

    {:ok, _} = LocalCluster.call(peer, ClusterScope, :register_operation, [MyApp.Ops.Greet])

    cookie = Atom.to_string(Node.get_cookie())
    args = ["--node", Atom.to_string(peer.node), "--cookie", cookie]

    assert {0, out} = run(["greet", "--name", "bo" | args])
    assert out =~ "Hello, bo, from #{peer.node}"

    assert {0, out} = run(["node_build_info", "--param", "node=#{peer.node}" | args])
    assert out =~ "node: #{peer.node}"
  end

  @tag :cluster
  test "the mix task, as its own OS process, connects as a hidden node" do
    {:ok, peer} = LocalCluster.start_peer(link: true)
    on_exit(fn -> LocalCluster.stop(peer) end)
    cookie = Atom.to_string(Node.get_cookie())

    {out, code} =
      System.cmd(
        "mix",
        [
          "cluster_scope.op",
          "node_build_info",
          "--param",
          "node=#{peer.node}",
          "--node",
          Atom.to_string(peer.node),
          "--cookie",
          cookie,
          "--json"
        ],
        env: [{"MIX_ENV", "test"}],
        stderr_to_stdout: true
      )

    assert code == 0, out
    json = out |> String.split("\n", trim: true) |> List.last()
    assert {:ok, %{"data" => %{"node" => node}}} = ClusterScope.JSON.decode(json)
    assert node == Atom.to_string(peer.node)

    {out, code} =
      System.cmd(
        "mix",
        [
          "cluster_scope.op",
          "node_build_info",
          "--param",
          "node=nobody@nowhere",
          "--node",
          Atom.to_string(peer.node),
          "--cookie",
          cookie
        ],
        env: [{"MIX_ENV", "test"}],
        stderr_to_stdout: true
      )

    assert code == 1, out
    assert out =~ "invalid_params"
  end
end
