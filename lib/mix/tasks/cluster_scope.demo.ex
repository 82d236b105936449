defmodule Mix.Tasks.ClusterScope.Demo do
  @shortdoc "Starts a real local cluster with ClusterScope on every node"
  @moduledoc """
  Starts this node as `cluster_scope_demo_<pid>@127.0.0.1` and `--nodes N`
  (default 3) real peer nodes on 127.0.0.1, each with ClusterScope started,
  prints every node with its build info, and keeps running until
  interrupted. The peers stop with this node.

      mix cluster_scope.demo [--nodes 3]

  It reads nothing from the terminal, so it also runs in the background
  (`make demo &`).
  """

  use Mix.Task

  alias ClusterScope.LocalCluster

  @impl true
  def run(args) do
    {opts, _, invalid} = OptionParser.parse(args, strict: [nodes: :integer])

    if invalid != [] or Keyword.get(opts, :nodes, 3) < 1 do
      Mix.raise("Usage: mix cluster_scope.demo [--nodes N] (N >= 1)")
    end

    count = Keyword.get(opts, :nodes, 3)
    Mix.Task.run("app.start")

    {:ok, _} = LocalCluster.ensure_distributed(name: "cluster_scope_demo")

    peers =
      case LocalCluster.start_peers(count, name_prefix: "cluster_scope_demo_#{System.pid()}") do
        {:ok, peers} -> peers
        {:error, reason} -> Mix.raise("Could not start the demo cluster: #{inspect(reason)}")
      end

    Mix.shell().info("ClusterScope demo cluster: #{count + 1} nodes")

    for info <- [
          ClusterScope.build_info()
          | Enum.map(peers, &LocalCluster.call(&1, ClusterScope, :build_info, []))
        ] do
      Mix.shell().info(format(info))
    end

    Mix.shell().info("Running; press Ctrl-C twice (or kill this process) to stop.")
    Process.sleep(:infinity)
  end

  defp format(%{node: node, otp_release: otp, elixir_version: ex, native: native} = info) do
    core =
      case native do
        %{core_version: v, nif_version: nif, target: target} -> "core #{v} nif #{nif} #{target}"
        {:error, reason} -> "core unavailable (#{reason})"
      end

    "  #{node}  cluster_scope #{info.cluster_scope_version}  OTP #{otp}  Elixir #{ex}  #{core}"
  end
end
