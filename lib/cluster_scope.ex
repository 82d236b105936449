defmodule ClusterScope do
  @moduledoc """
  ClusterScope: debugging and monitoring for a whole BEAM cluster.

  Add `:cluster_scope` to the deps of a clustered application and it starts
  with it. This module is the entry point of the Elixir API; see the README
  for the map of the library.
  """

  @typedoc "What this node reports about its ClusterScope."
  @type node_build :: %{
          node: node(),
          otp_release: String.t(),
          elixir_version: String.t(),
          cluster_scope_version: String.t(),
          protocol_version: pos_integer(),
          min_compatible_protocol: pos_integer(),
          native: ClusterScope.Native.build_info() | {:error, :native_unavailable}
        }

  @doc """
  The build of ClusterScope on this node: versions of OTP, Elixir,
  ClusterScope and its native core (or `{:error, :native_unavailable}`),
  and the protocol version it speaks with the oldest it understands
  (`ClusterScope.Protocol`: honours its test-only override). Every
  ClusterScope version answers this call the same way (the protocol's
  compatible subset): it stays here, the portable entry point other nodes
  call, and is computed by `ClusterScope.Agent.build_info/0`. Cheap and
  side-effect free.
  """
  @spec build_info() :: node_build()
  defdelegate build_info, to: ClusterScope.Agent

  @doc """
  Runs an operation by name (`"node_build_info"`) or module, with parameters
  as a map (string or atom keys), through the same runner as every other
  surface: validation, timeout, one error envelope.

  Options: `:version` (default the latest), `:timeout` (ms).

      {:ok, info} = ClusterScope.run("node_build_info", %{node: node()})
      {:error, %ClusterScope.Error{code: :invalid_params}} =
        ClusterScope.run("node_build_info", %{node: "nope@nowhere"})
  """
  @spec run(String.t() | module(), map(), keyword()) ::
          {:ok, map()} | {:error, ClusterScope.Error.t()}
  def run(operation, params \\ %{}, opts \\ []) do
    case ClusterScope.Operation.Runner.run(operation, params, opts) do
      {:ok, data, _metadata} -> {:ok, data}
      {:error, error, _metadata} -> {:error, error}
    end
  end

  @doc """
  The operations this node serves, with their routes and availability.
  """
  @spec operations() :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def operations, do: run("list_operations")

  @doc """
  The build of ClusterScope on `node` (default this node), asked on that node.
  """
  @spec node_build_info(node()) :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def node_build_info(node \\ node()), do: run("node_build_info", %{node: node})

  @doc """
  Registers a host-defined operation (a module using `ClusterScope.Operation`
  or following the Arsenal contract). It is served on every surface from the
  next request on.
  """
  @spec register_operation(module()) :: {:ok, map()} | {:error, String.t()}
  defdelegate register_operation(module), to: ClusterScope.Operation.Registry, as: :register

  @doc "Stops serving a host-defined operation."
  @spec unregister_operation(module()) :: :ok
  defdelegate unregister_operation(module), to: ClusterScope.Operation.Registry, as: :unregister

  @doc """
  Subscribes the calling process to events of a kind. For `:cluster` it
  receives `{:cluster_scope, :cluster, event}` for `:up`, `:down`,
  `:suspect`, `:partition`, `:heal` and `:mode` events (see
  `ClusterScope.Cluster.State`). The subscription ends with the process.
  """
  @spec subscribe(:cluster) :: :ok
  def subscribe(:cluster), do: ClusterScope.Cluster.State.subscribe(self())

  @doc "Ends a subscription of the calling process."
  @spec unsubscribe(:cluster) :: :ok
  def unsubscribe(:cluster), do: ClusterScope.Cluster.State.unsubscribe(self())

  @doc "The cluster's topology as seen from this node (see `ClusterTopology`)."
  @spec topology() :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def topology, do: run("cluster_topology")

  @doc "The partition classification as seen from this node."
  @spec partitions() :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def partitions, do: run("partition_status")

  @doc """
  The processes of every node as one list (see `ClusterScope.Procs` for the
  filters, `sort_by`, `limit`, `cursor` and `window_ms`).

      {:ok, %{processes: rows, next_cursor: cursor}} =
        ClusterScope.processes(%{sort_by: :message_queue_len, limit: 10})
  """
  @spec processes(map()) :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def processes(params \\ %{}), do: run("process_list", params)

  @doc "Everything about one process of any node (`\"0.123.0@node\"` or a pid)."
  @spec process_info(String.t() | pid()) :: {:ok, map()} | {:error, ClusterScope.Error.t()}
  def process_info(pid), do: run("get_process_info", %{pid: pid})

  @doc "ClusterScope's version on this node."
  @spec version() :: String.t()
  def version do
    case :application.get_key(:cluster_scope, :vsn) do
      {:ok, vsn} -> List.to_string(vsn)
      :undefined -> "unknown"
    end
  end
end
