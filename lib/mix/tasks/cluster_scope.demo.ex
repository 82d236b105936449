defmodule Mix.Tasks.ClusterScope.Demo do
  @shortdoc "Starts a real local cluster with a demo workload and the dashboard"
  @moduledoc """
  The front door (`make demo`): starts this node as
  `cluster_scope_demo@127.0.0.1` and `--nodes N` (default 3) real peer
  nodes on 127.0.0.1, each with ClusterScope started and a small workload
  (busy processes, a growing mailbox, a sandbox, a Horde registry when
  Horde loads: see `ClusterScope.Web.Demo`), prints every node with its
  build info, serves the HTTP API and dashboard on `127.0.0.1:4848`
  (`--port`), and keeps running until interrupted. The peers stop with
  this node.

      mix cluster_scope.demo [--nodes 3] [--port 4848]

  Once the API answers it prints one line:

      ClusterScope demo ready: http://127.0.0.1:4848 token=<token>

  The token (generated for this run unless `CLUSTER_SCOPE_TOKEN` is set) is
  the bearer token of the mutating operations. The node runs in demo mode:
  the dashboard (or `POST /api/v1/demo/nodes/:node/cut|freeze|heal`) can
  cut, freeze and heal a peer to watch detection happen.

  The demo node sets `allow_mode_switch: true`, so `POST /api/v1/cluster/mode`
  (and the dashboard) can switch it to a simulated or another local cluster.
  A production node leaves it off.

  It reads nothing from the terminal, so it also runs in the background
  (`make demo &`).
  """

  use Mix.Task

  alias ClusterScope.LocalCluster
  alias ClusterScope.Web.Demo

  @impl true
  def run(args) do
    {opts, _, invalid} = OptionParser.parse(args, strict: [nodes: :integer, port: :integer])

    if invalid != [] or Keyword.get(opts, :nodes, 3) < 1 do
      Mix.raise("Usage: mix cluster_scope.demo [--nodes N] [--port P] (N >= 1)")
    end

    # Distributed before ClusterScope starts: its heartbeat takes the node's
    # name when it starts (started first, it would beat as nonode@nohost and
    # the demo node would look cut off from its own cluster).
    Mix.Task.run("compile")

    case LocalCluster.ensure_distributed(name: "cluster_scope_demo") do
      {:ok, _} -> :ok
      {:error, reason} -> Mix.raise("Could not start distribution: #{inspect(reason)}")
    end

    Mix.Task.run("app.start")

    case start_demo(opts) do
      {:ok, demo} ->
        for line <- demo.lines, do: Mix.shell().info(line)
        Mix.shell().info("Running; press Ctrl-C twice (or kill this process) to stop.")
        Process.sleep(:infinity)

      {:error, message} ->
        Mix.raise(message)
    end
  end

  @doc """
  Everything the task does but waiting: the demo cluster with its
  workload, the endpoint with a token, and the lines to print (the last
  one is the `ready` line with URL and token). `stop_demo/1` undoes it.
  """
  @spec start_demo(keyword()) :: {:ok, map()} | {:error, String.t()}
  def start_demo(opts) do
    count = Keyword.get(opts, :nodes, 3)
    # A development node: mode switching on (off on every other node).
    Application.put_env(:cluster_scope, :allow_mode_switch, true)
    ClusterScope.Config.load()

    with {:ok, _} <- LocalCluster.ensure_distributed(name: "cluster_scope_demo"),
         {:ok, demo} <- start_cluster(count),
         token = token(),
         {:ok, endpoint} <- start_endpoint(Keyword.get(opts, :port, 4848), token),
         :ok <- await_answer(endpoint.url <> "/api/v1/operations", 50) do
      infos = [
        ClusterScope.build_info()
        | Enum.map(demo.peers, &LocalCluster.call(peer(&1), ClusterScope, :build_info, []))
      ]

      lines =
        ["ClusterScope demo cluster: #{count + 1} nodes"] ++
          Enum.map(infos, &format/1) ++
          [
            "Demo workload: busy processes, a growing mailbox, sandbox #{sandbox(demo.sandbox)}" <>
              if(Code.ensure_loaded?(Horde.Registry), do: ", a Horde registry", else: ""),
            "ClusterScope demo ready: #{endpoint.url} token=#{token}"
          ]

      {:ok, %{demo: demo, endpoint: endpoint, token: token, url: endpoint.url, lines: lines}}
    else
      {:error, reason} when is_binary(reason) ->
        Demo.stop()
        {:error, reason}

      {:error, reason} ->
        Demo.stop()
        {:error, "Could not start the demo: #{inspect(reason)}"}
    end
  end

  @doc "Stops what `start_demo/1` started."
  @spec stop_demo(map()) :: :ok
  def stop_demo(%{endpoint: endpoint}) do
    ClusterScope.Web.Endpoint.stop(endpoint)
    Demo.stop()
  end

  defp start_cluster(count) do
    case Demo.start(nodes: count) do
      {:ok, demo} -> {:ok, demo}
      {:error, reason} -> {:error, "Could not start the demo cluster: #{inspect(reason)}"}
    end
  end

  defp start_endpoint(port, token) do
    case ClusterScope.Web.Endpoint.start(port: port, token: token) do
      {:ok, endpoint} -> {:ok, endpoint}
      {:error, reason} -> {:error, "Could not start the HTTP endpoint: #{inspect(reason)}"}
    end
  end

  defp token do
    System.get_env("CLUSTER_SCOPE_TOKEN") ||
      Base.url_encode64(:crypto.strong_rand_bytes(24), padding: false)
  end

  # Build info is asked of the peer through the demo's control connection.
  defp peer(%{node: node}) do
    %LocalCluster.Peer{} = Demo.peer(node)
  end

  defp sandbox(%{name: name}), do: name
  defp sandbox(%{error: error}), do: "(not started: #{error})"

  defp await_answer(_url, 0), do: {:error, "The HTTP endpoint did not answer"}

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
