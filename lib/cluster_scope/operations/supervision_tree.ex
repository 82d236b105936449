defmodule ClusterScope.Operations.SupervisionTree do
  @moduledoc """
  `GET /api/v1/cluster/nodes/:node/supervision?root=...&depth=...`: a
  supervisor's children on one node, expanded lazily to `depth` (1..3),
  `limit` children per supervisor (1..500), from `offset` for the root.

  `root` is an application's name (its top supervisor), a registered name,
  or a pid of that node (`0.123.0@node`, or `<0.123.0>` meaning a process
  of `:node`); names are compared as text on the node, never turned into
  atoms. Without `root`, the children listed are the top supervisors of
  the node's started applications (by name, paged). Each supervisor listed carries its restart strategy, intensity and
  period (`flags`), its counts, its page of children (id, pid, type,
  modules, status `running`/`restarting`/`not_running`), `next_offset` when
  there are more, and `recent_restarts` (count, last time and the last
  reports, from the node's bounded logger handler
  `ClusterScope.NodeViews.SupervisorReports`). A child supervisor not
  expanded has `expanded: false`; one that did not answer within
  `call_timeout_ms` (10..2,000 ms) has `expansion: "stuck"` (suspended,
  blocked starting a child): reported, never waited on. The whole call is
  bounded by 11 s (at most four deadlines on the node).

  Cost: one remote call to the node; there, per supervisor expanded, one
  helper process and three calls (`count_children`, `which_children`,
  `:sys.get_state`), each level in parallel, at most 32 supervisors per
  call (see `ClusterScope.NodeViews.Supervision`). The answer is bounded by
  `limit` times the supervisors expanded. A node without ClusterScope is
  read from here with OTP calls (`Supervision.tree_remote/3`: each call
  carries the deadline as its own timeout; no flags, no recent restarts,
  roots by application name or pid; `agentless: true`). A node that does
  not answer gives `node_unavailable`.

  Errors: `not_found` (no such application, name or process; a dead pid),
  `invalid_params` naming `root` (a process that is not a supervisor, an
  application without a top supervisor, a pid of another node), `timeout`
  (the root supervisor itself is stuck).
  """

  # Depth 3 with 2 s per supervisor: at most 4 deadlines on the node (the
  # application master's answer and three levels), under this timeout.
  use ClusterScope.Operation, name: "supervision_tree", timeout: 11_000

  alias ClusterScope.{Fanout, ProcessRef}
  alias ClusterScope.NodeViews.Supervision

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/nodes/:node/supervision",
      summary: "A supervisor's children on a node, expanded lazily to a depth",
      parameters: [
        %{name: :node, type: :node, required: true, location: :path, description: "the node"},
        %{
          name: :root,
          type: :string,
          required: false,
          location: :query,
          max_length: 300,
          description:
            "an application name, a registered name, or a pid of the node " <>
              "(default: the top supervisors of every started application)"
        },
        %{
          name: :depth,
          type: :integer,
          required: false,
          default: 1,
          min: 1,
          max: Supervision.max_depth(),
          location: :query,
          description: "levels of supervisors expanded (1: the root's children)"
        },
        %{
          name: :limit,
          type: :integer,
          required: false,
          default: 50,
          min: 1,
          max: Supervision.max_limit(),
          location: :query,
          description: "children listed per supervisor"
        },
        %{
          name: :offset,
          type: :integer,
          required: false,
          default: 0,
          min: 0,
          max: 100_000,
          location: :query,
          description: "the root's first child listed (next_offset of a previous page)"
        },
        %{
          name: :call_timeout_ms,
          type: :integer,
          required: false,
          default: 1_000,
          min: 10,
          max: Supervision.max_call_timeout(),
          location: :query,
          description: "deadline of each supervisor's answer; past it the supervisor is stuck"
        }
      ],
      responses: %{200 => %{description: "the root supervisor and its children"}}
    }
  end

  @impl true
  def execute(%{node: node} = params) do
    with {:ok, root} <- root(params[:root], node) do
      opts = %{
        depth: params[:depth] || 1,
        limit: params[:limit] || 50,
        offset: params[:offset] || 0,
        call_timeout_ms: params[:call_timeout_ms] || 1_000
      }

      # One deadline per level, plus the application master's answer.
      timeout =
        Fanout.default_timeout()
        |> max(opts.call_timeout_ms * (opts.depth + 1) + 1_500)
        |> min(10_000)

      case Fanout.call(node, Supervision, :tree, [root, opts], timeout) do
        {:ok, answer} ->
          answer(answer, node, false)

        # No ClusterScope there: the same view from here, with OTP calls.
        {:error, %{status: :not_running}} ->
          answer(Supervision.tree_remote(node, root, opts), node, true)

        {:error, error} ->
          {:error, {:node_unavailable, error.reason, error}}
      end
    end
  end

  defp answer({:ok, tree}, node, agentless),
    do: {:ok, %{node: node, agentless: agentless, root: format(tree, node)}}

  defp answer({:error, {code, message}}, node, _agentless) when is_binary(message),
    do: error(code, message, node)

  defp answer(other, node, _agentless),
    do: {:error, {:internal, "unexpected answer from #{node}: #{inspect(other, limit: 5)}"}}

  defp root(nil, _node), do: {:ok, :applications}

  defp root(text, node) do
    if Regex.match?(~r/\A(#PID)?<?0\.\d+\.\d+>?(@.+)?\z/, text) do
      case ProcessRef.parse(text, [node | Node.list(:connected)] |> Enum.uniq()) do
        {:ok, %ProcessRef{} = ref} ->
          ref = if String.contains?(text, "@"), do: ref, else: %{ref | node: node}

          if ref.node == node,
            do: {:ok, {:pid_ref, ref}},
            else:
              {:error,
               {:invalid_params, "root names a process of #{ref.node}, not of #{node}",
                %{field: "root"}}}

        {:error, message} ->
          {:error, {:invalid_params, "root: #{message}", %{field: "root"}}}
      end
    else
      {:ok, {:name, text}}
    end
    |> case do
      {:ok, {:pid_ref, ref}} -> {:ok, {:local_pid, ref.id, ref.serial}}
      other -> other
    end
  end

  defp error(:not_found, message, _node), do: {:error, {:not_found, message}}
  defp error(:stuck, message, _node), do: {:error, {:timeout, message}}

  defp error(code, message, _node) when code in [:not_supervisor, :no_supervisor],
    do: {:error, {:invalid_params, message, %{field: "root", reason: code}}}

  defp error(:unreachable, message, node),
    do: {:error, {:node_unavailable, message, %{node: node}}}

  defp error(_code, message, _node), do: {:error, {:internal, message}}

  defp format(sup, node) do
    sup
    |> Map.update(:pid, nil, &pid_text/1)
    |> Map.update(:found_by, nil, &found_by/1)
    |> Map.update(:recent_restarts, nil, &restarts/1)
    |> Map.update(:children, nil, fn
      nil -> nil
      children -> Enum.map(children, &format(&1, node))
    end)
    |> Map.put(:node, node)
  end

  defp found_by({:application, app}), do: %{application: Atom.to_string(app)}
  defp found_by({:registered, name}), do: %{registered: inspect(name)}
  defp found_by(other), do: other

  defp restarts(nil), do: nil

  defp restarts(r) do
    %{
      r
      | recent:
          Enum.map(r.recent, fn e ->
            %{e | supervisor: pid_text(e.supervisor), child_pid: pid_text(e.child_pid)}
          end)
    }
  end

  defp pid_text(pid) when is_pid(pid), do: ProcessRef.to_string(pid)
  defp pid_text(other), do: other
end
