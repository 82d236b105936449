defmodule ClusterScope.Fanout do
  @moduledoc """
  The one place that calls other nodes.

  Calls run in parallel, each bounded by a timeout, and never raise: every
  answer is either a result or a per-node error with its cause and a
  remediation. A cluster-wide read returns what the reachable nodes said plus
  the list of those that did not answer (principle: degrade, never fail).

  ## Cost

  One `:erpc` request per node; nothing is retried. A node that does not
  answer within the timeout costs the caller exactly the timeout, never more,
  whatever the number of nodes (they are called at once).

  ## Doors

    * `call/5` and `multicall/5` - results or node errors, for reads
    * `rpc/5` - one call that answers the raw error class (`:erpc` error,
      remote exception, exit or throw), for callers that decide per class:
      process control tells "no such pid" (`badarg`) and "that node's
      ClusterScope is older" (`undef`) from a node that is down;
      `describe/2` turns such an error into a node error
    * `spawn/4` - a node-side process that talks back by message (the
      agentless row stream and its acknowledgements)

  No other module calls another node itself (a test checks `lib/`):
  timeouts and per-node errors are decided here.
  """

  @typedoc "Why a node gave no answer."
  @type node_error :: %{
          node: node(),
          reason: String.t(),
          status: :down | :timeout | :error | :not_running,
          remediation: String.t()
        }

  @doc """
  Calls `module.fun(args)` on one node (locally when it is this node).
  Returns `{:ok, result}` or `{:error, node_error}`.
  """
  @spec call(node(), module(), atom(), list(), timeout()) ::
          {:ok, term()} | {:error, node_error()}
  def call(node, module, fun, args, timeout \\ default_timeout()) do
    case multicall([node], module, fun, args, timeout) do
      {[{^node, result}], []} -> {:ok, result}
      {[], [error]} -> {:error, error}
    end
  end

  @doc """
  Calls `module.fun(args)` on every node in `nodes` at once. Returns
  `{[{node, result}], [node_error]}`, both in the order of `nodes`.
  """
  @spec multicall([node()], module(), atom(), list(), timeout()) ::
          {[{node(), term()}], [node_error()]}
  def multicall(nodes, module, fun, args, timeout \\ default_timeout()) do
    # Virtual nodes of the simulated mode run no code: never called (an
    # unresolvable host name), each answered as a node error saying so.
    {virtual, nodes} = split_virtual(nodes)
    {oks, errors} = call_all(nodes, module, fun, args, timeout)
    {oks, errors ++ Enum.map(virtual, &simulated_error/1)}
  end

  defp split_virtual(nodes) do
    if ClusterScope.Mode.current() == :simulated,
      do: Enum.split_with(nodes, &ClusterScope.Simulator.virtual?/1),
      else: {[], nodes}
  end

  defp simulated_error(node) do
    %{
      node: node,
      status: :error,
      reason: "#{node} is a virtual node of the simulated mode: it runs no code to call",
      remediation:
        "Process, health and metrics operations answer for virtual nodes; for the others, " <>
          "use real nodes (multi_node or local_cluster mode)."
    }
  end

  defp call_all([], _module, _fun, _args, _timeout), do: {[], []}

  defp call_all(nodes, module, fun, args, timeout) do
    results = :erpc.multicall(nodes, module, fun, args, timeout)

    nodes
    |> Enum.zip(results)
    |> Enum.reduce({[], []}, fn
      {node, {:ok, value}}, {oks, errs} -> {[{node, value} | oks], errs}
      {node, {kind, reason}}, {oks, errs} -> {oks, [node_error(node, kind, reason) | errs]}
    end)
    |> then(fn {oks, errs} -> {Enum.reverse(oks), Enum.reverse(errs)} end)
  end

  @typedoc """
  Why one `rpc/5` gave no result, as `:erpc` raised it: the call did not
  complete (`{:erpc, :noconnection | :timeout | ...}`), or the function
  raised, exited or threw on the other node.
  """
  @type rpc_error ::
          {:erpc, term()}
          | {:exception, term(), list()}
          | {:exit, term()}
          | {:throw, term()}

  @doc """
  Calls `module.fun(args)` on `node` (through `:erpc` even for this node,
  so the call runs in a process of its own) and returns the raw error
  class instead of a `t:node_error/0`, for callers that decide per class
  (an `:undef` from an older peer, a `:badarg` meaning "no such pid").
  Never raises; bounded by `timeout`. `describe/2` turns an error into a
  node error.
  """
  @spec rpc(node(), module(), atom(), list(), timeout()) ::
          {:ok, term()} | {:error, rpc_error()}
  def rpc(node, module, fun, args, timeout \\ default_timeout()) do
    # A virtual node of the simulated mode cannot be connected to.
    if ClusterScope.Simulator.virtual?(node),
      do: {:error, {:erpc, :noconnection}},
      else: {:ok, :erpc.call(node, module, fun, args, timeout)}
  catch
    :error, {:erpc, _} = reason -> {:error, reason}
    :error, {:exception, reason, stack} -> {:error, {:exception, reason, stack}}
    :exit, {:exception, reason} -> {:error, {:exit, reason}}
    :throw, value -> {:error, {:throw, value}}
  end

  @doc """
  Starts `module.fun(args)` in a new process on `node` and returns its pid
  at once (a pid that exits with `:noconnection` when the node cannot be
  reached: monitor it). For node-side streams that talk back by message,
  such as the agentless process rows.
  """
  @spec spawn(node(), module(), atom(), list()) :: pid()
  def spawn(node, module, fun, args), do: Node.spawn(node, module, fun, args)

  @doc "The node error of an `rpc/5` error (what `call/5` would have answered)."
  @spec describe(node(), rpc_error()) :: node_error()
  def describe(node, {:erpc, _} = reason), do: node_error(node, :error, reason)

  def describe(node, {:exception, reason, stack}),
    do: node_error(node, :error, {:exception, reason, stack})

  def describe(node, {:exit, reason}), do: node_error(node, :exit, reason)
  def describe(node, {:throw, value}), do: node_error(node, :throw, value)

  @doc """
  Each known node's status as this node's cluster state sees it
  (`%{node => :up | :suspected | ...}`; empty when the state is not running).
  Departed nodes (gone for good, see `ClusterScope.Cluster.State`) are left
  out: a cluster-wide call neither calls them nor reports them as errors.
  """
  @spec node_statuses() :: %{node() => atom()}
  def node_statuses do
    for %{node: node, status: status} <-
          Map.get(ClusterScope.Cluster.State.topology(), :nodes, []),
        status != :departed,
        into: %{},
        do: {node, status}
  catch
    :exit, _ -> %{}
  end

  @doc """
  The error of a node a cluster-wide call skips because this node already
  sees it as `status` (calling it would only cost the timeout).
  """
  @spec not_called(node(), atom()) :: node_error()
  def not_called(node, status) do
    %{
      node: node,
      status: status,
      reason: "not called: #{node} is #{status} as seen from #{node()}",
      remediation: "See GET /api/v1/cluster/topology and /api/v1/cluster/partitions for why."
    }
  end

  @doc "The default per-node timeout (`node_timeout_ms`)."
  @spec default_timeout() :: pos_integer()
  def default_timeout, do: ClusterScope.Config.get(:node_timeout_ms)

  defp node_error(node, :error, {:erpc, :noconnection}) do
    %{
      node: node,
      status: :down,
      reason: "no connection to #{node}",
      remediation:
        "Check that #{node} is up and reachable from #{node()} (epmd, cookie, firewall)."
    }
  end

  defp node_error(node, :error, {:erpc, :timeout}) do
    %{
      node: node,
      status: :timeout,
      reason: "#{node} did not answer in time",
      remediation: "The node may be overloaded, frozen or partitioned; check its load and links."
    }
  end

  defp node_error(node, :error, {:exception, :undef, _}) do
    %{
      node: node,
      status: :not_running,
      reason: "ClusterScope's code is not loaded on #{node}",
      remediation: "Add :cluster_scope to #{node}'s release, or accept agentless answers."
    }
  end

  defp node_error(node, kind, reason) do
    %{
      node: node,
      status: :error,
      reason: "#{kind}: #{inspect(reason, limit: 10, printable_limit: 200)}",
      remediation: "See #{node}'s log."
    }
  end
end
