defmodule ClusterScope.NodeViews.Ranking do
  @moduledoc """
  The cluster-wide top-K of the ETS and port views: which nodes to ask, the
  fan-out, the merge in the Rust core, and the cursor.

  Each node ranks its own rows with an OTP-only module (`*.Local`) and
  sends its best `limit`; a node without ClusterScope gets that module's
  object code first (`ClusterScope.Procs.Agentless.ensure_module/4`) and
  is marked `agentless`. This node merges the per-node lists with
  `cluster_scope_core::rank` (`rank_merge_top/2`, the bounded heap of the
  process ranking, on a dirty scheduler): value descending, then node name,
  then the row's id on its node. The cursor is the last row's `{value,
  node, id}`, so a page never repeats or skips a row that kept its value.

  Cost here: one task per node, each bounded by the node timeout (a node
  that does not answer is in `node_errors`), and one merge of at most
  nodes x `limit` values. Every call to another node goes through
  `ClusterScope.Fanout`.
  """

  alias ClusterScope.{Fanout, Native}
  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Procs.Agentless

  @doc """
  The nodes a cluster-wide view asks: `nodes` when given (validated as
  known nodes by the operation), else this node and every connected
  visible node. Returns `{nodes, skipped}`, `skipped` being the node errors
  of known nodes this node sees as not up (not called).
  """
  @spec targets([node()] | nil) :: {[node()], [Fanout.node_error()]}
  def targets(nodes) do
    connected = [node() | Node.list()]

    case nodes do
      list when is_list(list) and list != [] ->
        {Enum.uniq(list), []}

      _ ->
        skipped =
          for {n, status} <- Fanout.node_statuses(),
              n not in connected,
              do: Fanout.not_called(n, status)

        {connected, skipped}
    end
  end

  @doc """
  Runs `local.fun(args)` on each node at once (loading `local` onto nodes
  without ClusterScope, with `extra` modules it needs), all of a node's
  calls bounded together by `timeout`. Returns `{answers, node_errors, agentless}` with answers
  sorted by node name.
  """
  @spec fan_out([node()], module(), atom(), list(), timeout(), [{module(), {atom(), arity()}}]) ::
          {[{node(), term()}], [Fanout.node_error()], [node()]}
  def fan_out(nodes, local, fun, args, timeout, extra \\ []) do
    agents = Heartbeat.agent_nodes()
    deadline = System.monotonic_time(:millisecond) + timeout

    tasks =
      for node <- nodes do
        {node, Task.async(fn -> one(node, node in agents, local, fun, args, deadline, extra) end)}
      end

    {oks, errs, agentless} =
      Enum.reduce(tasks, {[], [], []}, fn {node, task}, {oks, errs, bare} ->
        wait = max(deadline - System.monotonic_time(:millisecond), 0) + 200

        case Task.yield(task, wait) || Task.shutdown(task, :brutal_kill) do
          {:ok, {:ok, value, was_bare}} ->
            {[{node, value} | oks], errs, if(was_bare, do: [node | bare], else: bare)}

          {:ok, {:error, error}} ->
            {oks, [error | errs], bare}

          nil ->
            {oks, [Fanout.describe(node, {:erpc, :timeout}) | errs], bare}

          {:exit, reason} ->
            {oks, [Fanout.describe(node, {:exit, reason}) | errs], bare}
        end
      end)

    {Enum.sort_by(oks, &Atom.to_string(elem(&1, 0))), Enum.reverse(errs), Enum.sort(agentless)}
  end

  # Every call of one node shares the deadline: loading the module onto an
  # agentless node and asking again never takes it past the timeout.
  defp one(node, agent?, local, fun, args, deadline, extra) do
    case Fanout.rpc(node, local, fun, args, left(deadline)) do
      {:ok, value} ->
        {:ok, value, not agent?}

      # The module is missing there (no ClusterScope, or an older one):
      # load the OTP-only module and ask again.
      {:error, {:exception, :undef, [{^local, ^fun, _, _} | _]}} ->
        with :ok <- ensure(node, [{local, {fun, length(args)}} | extra], deadline),
             {:ok, value} <- Fanout.rpc(node, local, fun, args, left(deadline)) do
          {:ok, value, true}
        else
          {:error, {:erpc, _} = reason} -> {:error, Fanout.describe(node, reason)}
          {:error, {:exception, _, _} = reason} -> {:error, Fanout.describe(node, reason)}
          {:error, {:exit, _} = reason} -> {:error, Fanout.describe(node, reason)}
          {:error, {:throw, _} = reason} -> {:error, Fanout.describe(node, reason)}
          {:error, reason} -> {:error, not_loaded(node, local, reason)}
        end

      {:error, reason} ->
        {:error, Fanout.describe(node, reason)}
    end
  end

  defp left(deadline), do: max(deadline - System.monotonic_time(:millisecond), 1)

  defp ensure(node, modules, deadline) do
    Enum.reduce_while(modules, :ok, fn {mod, fa}, :ok ->
      case Agentless.ensure_module(node, mod, fa, left(deadline)) do
        :ok -> {:cont, :ok}
        error -> {:halt, error}
      end
    end)
  end

  defp not_loaded(node, local, reason) do
    %{
      node: node,
      status: :not_running,
      reason:
        "#{node} runs no ClusterScope and #{inspect(local)} could not be loaded there: " <>
          inspect(reason, limit: 10),
      remediation: "Add :cluster_scope to #{node}'s release (a module of that name may differ)."
    }
  end

  @doc """
  Merges per-node answers (`[{node, %{rows: rows}}]`, each node's rows in
  its own order, each row with a `:value`) into the best `limit` in the
  core. Returns `{:ok, [{node, row}], more?}`.
  """
  @spec merge([{node(), map()}], pos_integer()) ::
          {:ok, [{node(), map()}], boolean()} | {:error, term()}
  def merge(answers, limit) do
    nodes = List.to_tuple(answers)
    lists = Enum.map(answers, fn {_node, %{rows: rows}} -> Enum.map(rows, & &1.value) end)

    case Native.rank_merge_top(lists, limit) do
      {:ok, entries, more} ->
        rows_by_node = Enum.map(answers, fn {_n, %{rows: rows}} -> List.to_tuple(rows) end)
        rows_by_node = List.to_tuple(rows_by_node)

        picked =
          for {i, pos} <- entries do
            {node, _} = elem(nodes, i)
            {node, elem(elem(rows_by_node, i), pos)}
          end

        nodes_more = Enum.any?(answers, fn {_n, answer} -> Map.get(answer, :more, false) end)
        {:ok, picked, more or nodes_more}

      {:error, _} = error ->
        error
    end
  end

  @doc """
  The parameters every ranked node view shares (`nodes`, `sort_by`, `limit`,
  `cursor`, `name`, and its `max_*` bound): one declaration for the ETS
  and the ports operations.
  """
  @spec parameters(keyword()) :: [map()]
  def parameters(opts) do
    {max_name, max} = Keyword.fetch!(opts, :max)

    [
      %{
        name: :nodes,
        type: :array,
        items: :node,
        max_length: 1_000,
        location: :query,
        description: "only these nodes (default: every connected node)"
      },
      %{
        name: :sort_by,
        type: :enum,
        values: Keyword.fetch!(opts, :sort_fields),
        default: Keyword.fetch!(opts, :sort_default),
        location: :query,
        description: Keyword.fetch!(opts, :sort_description)
      },
      %{
        name: :limit,
        type: :integer,
        min: 1,
        max: 1000,
        default: 20,
        location: :query,
        description: "rows per page"
      },
      %{
        name: :cursor,
        type: :string,
        max_length: 1000,
        location: :query,
        description: "next_cursor of the previous page"
      }
    ] ++
      Keyword.get(opts, :extra, []) ++
      [
        %{
          name: :name,
          type: :string,
          min_length: 1,
          max_length: 255,
          location: :query,
          description: Keyword.fetch!(opts, :name_description)
        },
        %{
          name: max_name,
          type: :integer,
          min: 1,
          max: max,
          default: max,
          location: :query,
          description: Keyword.fetch!(opts, :max_description)
        }
      ]
  end

  @doc "`check_params/1` of a ranked view: the cursor decoded for its `sort_by`, or the field named."
  @spec check_cursor(map()) :: {:ok, map()} | {:error, [map()]}
  def check_cursor(%{cursor: cursor} = params) when is_binary(cursor) do
    case decode_cursor(cursor, params.sort_by) do
      {:ok, decoded} -> {:ok, %{params | cursor: decoded}}
      {:error, message} -> {:error, [%{field: "cursor", message: message}]}
    end
  end

  def check_cursor(params), do: {:ok, params}

  @doc """
  The cursor after a row: `sort.value.node.id` with node and id in
  URL-safe Base64, so any text survives a query string.
  """
  @spec encode_cursor(atom(), non_neg_integer(), node(), binary()) :: binary()
  def encode_cursor(sort_by, value, node, id) do
    Enum.join(
      [
        Atom.to_string(sort_by),
        Integer.to_string(value),
        Base.url_encode64(Atom.to_string(node), padding: false),
        Base.url_encode64(id, padding: false)
      ],
      "."
    )
  end

  @doc """
  Reads a cursor of `encode_cursor/4` made for `sort_by`: `{:ok, {value,
  node_text, id}}` or `{:error, message}` (for the field `cursor`).
  Nothing in it becomes an atom.
  """
  @spec decode_cursor(binary(), atom()) ::
          {:ok, {non_neg_integer(), binary(), binary()}} | {:error, String.t()}
  def decode_cursor(text, sort_by) do
    sort = Atom.to_string(sort_by)

    with [^sort, value, node, id] <- String.split(text, "."),
         {value, ""} when value >= 0 <- Integer.parse(value),
         {:ok, node} <- Base.url_decode64(node, padding: false),
         {:ok, id} <- Base.url_decode64(id, padding: false) do
      {:ok, {value, node, id}}
    else
      [other, _, _, _] when other != sort ->
        {:error, "was made for sort_by=#{String.slice(other, 0, 30)}, not #{sort}"}

      _ ->
        {:error, "is not a next_cursor of this operation"}
    end
  end
end
