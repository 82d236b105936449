defmodule Mix.Tasks.ClusterScope.Demo do
  @shortdoc "Starts a real local cluster with ClusterScope on every node"
  @moduledoc """
  Starts this node as `cluster_scope_demo_<pid>@127.0.0.1` and `--nodes N`
  (default 3) real peer nodes on 127.0.0.1, each with ClusterScope started,
  prints every node with its build info, serves the HTTP API and dashboard on
  `127.0.0.1:4848` (`--port`), and keeps running until interrupted. The
  peers stop with this node.

      mix cluster_scope.demo [--nodes 3] [--port 4848]

  Once the API answers it prints one line:

      ClusterScope demo ready: http://127.0.0.1:4848 token=<token>

  The token (generated for this run unless `CLUSTER_SCOPE_TOKEN` is set) is
  the bearer token of the mutating operations.

  The demo node sets `allow_mode_switch: true`, so `POST /api/v1/cluster/mode`
  (and the dashboard) can switch it to a simulated or another local cluster.
  A production node leaves it off.

  It reads nothing from the terminal, so it also runs in the background
  (`make demo &`).
  """

  use Mix.Task

  alias ClusterScope.LocalCluster

  @impl true
  def run(args) do
    {opts, _, invalid} = OptionParser.parse(args, strict: [nodes: :integer, port: :integer])

    if invalid != [] or Keyword.get(opts, :nodes, 3) < 1 do
      Mix.raise("Usage: mix cluster_scope.demo [--nodes N] [--port P] (N >= 1)")
    end

    count = Keyword.get(opts, :nodes, 3)
    # A development node: mode switching on (off on every other node).
    Application.put_env(:cluster_scope, :allow_mode_switch, true)
    Mix.Task.run("app.start")
    ClusterScope.Config.load()

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

    token =
      System.get_env("CLUSTER_SCOPE_TOKEN") ||
        Base.url_encode64(:crypto.strong_rand_bytes(24), padding: false)

    endpoint =
      case ClusterScope.Web.Endpoint.start(port: Keyword.get(opts, :port, 4848), token: token) do
        {:ok, endpoint} -> endpoint
        {:error, reason} -> Mix.raise("Could not start the HTTP endpoint: #{inspect(reason)}")
      end

    :ok = await_answer(endpoint.url <> "/api/v1/operations", 50)
    Mix.shell().info("ClusterScope demo ready: #{endpoint.url} token=#{token}")
    Mix.shell().info("Running; press Ctrl-C twice (or kill this process) to stop.")
    Process.sleep(:infinity)
  end

  defp await_answer(_url, 0), do: Mix.raise("The HTTP endpoint did not answer")

  defp await_answer(url, tries) do
    case :httpc.request(:get, {String.to_charlist(url), []}, [timeout: 2_000], []) do
      {:ok, {{_, 200, _}, _, _}} ->
        :ok

      _ ->
        Process.sleep(100)
        await_answer(url, tries - 1)
    end
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
