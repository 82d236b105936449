defmodule ClusterScope.Operations.NodeOs do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node/os`: the machine one node runs on: CPU
  load (1, 5, 15 min, runnable threads, CPUs), memory and swap (total,
  available, used %), disk usage of its mounted local file systems, the
  cgroup limits that apply (memory.max and use, cpu.max), and where each
  part came from (`/proc`, `df`, or `os_mon`'s `cpu_sup`, `memsup`,
  `disksup` when the host runs it: ClusterScope never starts `os_mon`).

  Cost: one remote call; there, about ten small file reads and, unless
  `disks=false` or `disksup` runs, one `df -kPl` (a fork and exec, killed
  after 2 s). See `ClusterScope.NodeViews.Os`. A node without ClusterScope
  is read from here with OTP calls (`Os.read_remote/3`: its `/proc` files
  through `:file.read_file/1`, no `df`; `agentless: true`). A node that
  does not answer within the node timeout gives `node_unavailable`.
  """

  use ClusterScope.Operation, name: "node_os"

  alias ClusterScope.Fanout
  alias ClusterScope.NodeViews.Os

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node/os",
      summary: "CPU load, memory, swap, disks and cgroup limits of a node's machine",
      parameters: [
        %{name: :node, type: :node, required: true, location: :path, description: "the node"},
        %{
          name: :disks,
          type: :boolean,
          required: false,
          default: true,
          location: :query,
          description: "read disk usage (one df run when os_mon's disksup does not run)"
        }
      ],
      responses: %{200 => %{description: "the node's OS data"}}
    }
  end

  @impl true
  def execute(%{node: node} = params) do
    opts = %{disks: Map.get(params, :disks, true)}

    case Fanout.call(node, Os, :read, [opts]) do
      {:ok, %{} = reading} ->
        {:ok, reading}

      {:ok, other} ->
        {:error, {:internal, "unexpected answer: #{inspect(other, limit: 5)}"}}

      # No ClusterScope there: read it from here with OTP calls.
      {:error, %{status: :not_running}} ->
        case Os.read_remote(node, opts, Fanout.default_timeout()) do
          {:ok, reading} ->
            {:ok, reading}

          {:error, reason} ->
            error = Fanout.describe(node, reason)
            {:error, {:node_unavailable, error.reason, error}}
        end

      {:error, error} ->
        {:error, {:node_unavailable, error.reason, error}}
    end
  end
end
