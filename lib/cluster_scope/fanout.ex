defmodule ClusterScope.Fanout do
  @moduledoc """
  The one place that calls other nodes.

  Calls run in parallel, each bounded by a timeout, and never raise: every
  answer is either a result or a per-node error with its cause and a
  remediation. A cluster-wide read returns what the reachable nodes said plus
  the list of those that did not answer (principle: degrade, never fail).

  ## Cost

  One `:erpc` request per node, all sent at once. A node that does not
  answer within the timeout costs the caller at most the timeout, whatever
  the number of nodes, unless the call is retried (below).

  ## Retries

  Inside a read that declares itself idempotent (see
  `ClusterScope.Operation`), a node that failed with a transient error (no
  connection, no answer in time, a ClusterScope server restarting there) is
  called again with bounded exponential backoff, only while the attempt can
  end before the operation's deadline (`ClusterScope.Fanout.Retry`). Its
  node error, if it never answers, says how many attempts were made
  (`attempts`). Nothing else is retried: an answer, bad input, a version
  mismatch, or any call outside an idempotent read (changes are never
  retried).

  ## Protocol versions

  Every agent call carries this node's protocol version: it is sent as
  `ClusterScope.Protocol.serve(version, m, f, a)`, whose check on the peer
  refuses a version it does not understand. A peer known to speak a version
  this node cannot talk with (`ClusterScope.Protocol`) is not called: it
  gets a `:version_mismatch` node error naming both versions. Calls in the
  compatible subset (OTP modules, the portable row reader,
  `ClusterScope.build_info/0`; `ClusterScope.Protocol.portable?/3`) go out
  as they are, to any version.

  Every answering node is reported to the operation's run
  (`ClusterScope.Fanout.Retry.answered/1`), which lists them in the answer's
  metadata as `nodes_answered`.

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

  alias ClusterScope.Fanout.Retry
  alias ClusterScope.Protocol

  @typedoc "Why a node gave no answer."
  @type node_error :: %{
          node: node(),
          reason: String.t(),
          status: :down | :timeout | :error | :not_running | :version_mismatch,
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
    context = Retry.get()
    portable = Protocol.portable?(module, fun, args)

    # What each node gets: the call in the version it understands, or a
    # version_mismatch error without calling it.
    {calls, refused} =
      Enum.reduce(nodes, {%{}, %{}}, fn node, {calls, refused} ->
        case envelope(node, module, fun, args, portable) do
          {:call, mfa} -> {Map.put(calls, node, mfa), refused}
          {:mismatch, pv} -> {calls, Map.put(refused, node, mismatch_error(node, pv))}
        end
      end)

    results = attempt(calls, %{}, timeout, context, 1)
    answered = for {node, {{:ok, _}, _}} <- results, do: node
    Retry.answered(answered)

    nodes
    |> Enum.reduce({[], []}, fn node, {oks, errs} ->
      case {Map.fetch(refused, node), Map.fetch(results, node)} do
        {{:ok, error}, _} -> {oks, [error | errs]}
        {_, {:ok, {{:ok, value}, _}}} -> {[{node, value} | oks], errs}
        {_, {:ok, {{kind, reason}, n}}} -> {oks, [failed(node, kind, reason, n) | errs]}
      end
    end)
    |> then(fn {oks, errs} -> {Enum.reverse(oks), Enum.reverse(errs)} end)
  end

  # Sends every call at once, collects the answers within `timeout`, then
  # retries the transient failures while the run's context allows.
  defp attempt(calls, results, _timeout, _context, _n) when map_size(calls) == 0, do: results

  defp attempt(calls, results, timeout, context, n) do
    requests = for {node, {m, f, a}} <- calls, do: {node, send_one(node, m, f, a)}
    deadline = now_ms() + timeout

    round =
      Map.new(requests, fn
        {node, {:sent, request}} -> {node, {receive_one(request, max(deadline - now_ms(), 0)), n}}
        {node, {:failed, result}} -> {node, {result, n}}
      end)

    results = Map.merge(results, round)
    transient = for {node, {result, _}} <- round, Retry.transient?(result), do: node

    case transient != [] and Retry.next(context, n, timeout, now_ms()) do
      {:retry, wait, next_timeout} ->
        Process.sleep(wait)
        attempt(Map.take(calls, transient), results, next_timeout, context, n + 1)

      _ ->
        results
    end
  end

  # A request that cannot even be sent (this node not distributed, a bad
  # node name) is a failed result, never a raise.
  defp send_one(node, m, f, a) do
    {:sent, :erpc.send_request(node, m, f, a)}
  catch
    :error, {:erpc, _} = reason -> {:failed, {:error, reason}}
    :error, reason -> {:failed, {:error, {:erpc, reason}}}
  end

  # One answer, in the shape of `:erpc.multicall/5`'s results.
  defp receive_one(request, timeout) do
    {:ok, :erpc.receive_response(request, timeout)}
  catch
    :error, {:erpc, _} = reason -> {:error, reason}
    :error, {:exception, _, _} = reason -> {:error, reason}
    :exit, reason -> {:exit, reason}
    :throw, value -> {:throw, value}
  end

  # The call as `node` gets it: wrapped in the protocol door with the
  # version to speak, or as it is for the compatible subset.
  defp envelope(_node, m, f, a, true), do: {:call, {m, f, a}}

  defp envelope(node, m, f, a, false) do
    speak =
      case Protocol.peer(node) do
        nil -> Protocol.version()
        pv -> Protocol.speak(pv)
      end

    if speak,
      do: {:call, {Protocol, :serve, [speak, m, f, a]}},
      else: {:mismatch, Protocol.peer(node)}
  end

  defp failed(node, kind, reason, attempts) do
    error =
      case {kind, reason} do
        {:error, {:exception, {:cluster_scope_protocol_mismatch, pv}, _}} ->
          Protocol.note_peer(node, pv)
          mismatch_error(node, pv)

        _ ->
          node_error(node, kind, reason)
      end

    if attempts > 1, do: Map.put(error, :attempts, attempts), else: error
  end

  defp mismatch_error(node, {version, min}) do
    %{
      node: node,
      status: :version_mismatch,
      reason:
        "#{node} speaks ClusterScope protocol #{version} (understands #{min}..#{version}); " <>
          "#{node()} speaks #{Protocol.version()} (understands " <>
          "#{Protocol.min_compatible()}..#{Protocol.version()}): its agent was not called",
      remediation:
        "Finish the rolling deploy so both run the same ClusterScope; meanwhile processes " <>
          "are read agentless and GET /api/v1/cluster/nodes/#{node}/build shows its version.",
      versions: %{node: version, node_min: min, here: Protocol.version()}
    }
  end

  defp now_ms, do: System.monotonic_time(:millisecond)

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
    cond do
      # A virtual node of the simulated mode cannot be connected to.
      ClusterScope.Simulator.virtual?(node) ->
        {:error, {:erpc, :noconnection}}

      true ->
        case envelope(node, module, fun, args, Protocol.portable?(module, fun, args)) do
          {:call, {m, f, a}} ->
            result = {:ok, :erpc.call(node, m, f, a, timeout)}
            Retry.answered([node])
            result

          {:mismatch, pv} ->
            {:error, {:exception, {:cluster_scope_protocol_mismatch, pv}, []}}
        end
    end
  catch
    :error, {:erpc, _} = reason ->
      {:error, reason}

    :error, {:exception, {:cluster_scope_protocol_mismatch, pv} = reason, stack} ->
      Protocol.note_peer(node, pv)
      {:error, {:exception, reason, stack}}

    :error, {:exception, reason, stack} ->
      Retry.answered([node])
      {:error, {:exception, reason, stack}}

    :exit, {:exception, reason} ->
      Retry.answered([node])
      {:error, {:exit, reason}}

    :throw, value ->
      Retry.answered([node])
      {:error, {:throw, value}}
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

  def describe(node, {:exception, {:cluster_scope_protocol_mismatch, pv}, _}),
    do: mismatch_error(node, pv)

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

  defp node_error(node, :error, {:exception, :undef, [{Protocol, :serve, 4, _} | _]}) do
    %{
      node: node,
      status: :not_running,
      reason:
        "no ClusterScope speaking protocol #{Protocol.min_compatible()} or later is loaded on " <>
          "#{node} (not installed, or an older release)",
      remediation:
        "Add :cluster_scope (this release) to #{node}, or accept agentless answers; " <>
          "GET /api/v1/cluster/nodes/#{node}/build shows what it runs."
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
