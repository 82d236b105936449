defmodule ClusterScope.NodeViews.Ets do
  @moduledoc """
  The ETS tables of every node as one ranked view, and one bounded page of
  one table.

  `tables/1` ranks tables by memory (bytes: the table's words times the
  word size) or by size (objects), largest first, across the cluster: each
  node reads the headers of its own tables (`:ets.info/1`, never their
  contents) and sends its best `limit`
  (`ClusterScope.NodeViews.Ets.Local`); this node merges them in the Rust
  core (`ClusterScope.NodeViews.Ranking`). Rows carry their node, the
  owner (node-qualified pid and registered name), the heir, type,
  protection, whether the table is named, and its name as text (a table's
  name is an atom that already exists on its node; input never becomes
  one). Filters: `owner` (a pid: only its node is asked) and `name` (a
  substring of the table's name).

  `page/4` reads one page of one public or protected table (see
  `ClusterScope.NodeViews.Ets.Local.page_v1/4`): a sensitive read, since a
  table holds whatever the host put there; objects are redacted on the
  table's node and again by the runner.

  ## Cost on each node

  One `:ets.info/1` per table, at most `max_tables` (default and ceiling
  100,000) and stopped at the deadline (the node timeout less a margin),
  a sort of the eligible tables and the owner's name of the winners:
  measured 34 ms end to end (`ets_tables`, one node) for 10,000 tables on
  a loaded 2-core machine, where `:ets.info/1` of every table alone took
  49 ms in a long-lived process. A node without ClusterScope is answered too:
  the OTP-only module is loaded there first (`agentless`). A page costs
  `limit` key steps and lookups on one table, under a safe fixation for
  the duration of the call.
  """

  alias ClusterScope.{Config, Fanout, ProcessRef, Secrets}
  alias ClusterScope.NodeViews.Ranking
  alias ClusterScope.NodeViews.Ets.Local

  @sort_fields [:memory, :size]

  @doc "The fields tables can be ranked by."
  @spec sort_fields() :: [atom()]
  def sort_fields, do: @sort_fields

  @doc """
  The best `limit` tables across `nodes` (default: every connected node)
  by `sort_by`, after `cursor` (decoded `{value, node_text, id}`), with
  `owner` (a `ProcessRef`) and `name` filters. Returns `{:ok, %{tables:,
  next_cursor:, per_node:, nodes:, agentless:, node_errors:, ...}}`.
  """
  @spec tables(map()) :: {:ok, map()} | {:error, term()}
  def tables(params) do
    sort_by = Map.get(params, :sort_by, :memory)
    limit = Map.get(params, :limit, 20)
    owner = Map.get(params, :owner)
    timeout = Map.get(params, :timeout, Fanout.default_timeout())

    nodes =
      case owner do
        %ProcessRef{node: n} -> [n]
        _ -> Map.get(params, :nodes)
      end

    {targets, skipped} = Ranking.targets(nodes)

    opts = %{
      sort_by: sort_by,
      limit: limit,
      owner: owner && {owner.id, owner.serial},
      name: Map.get(params, :name),
      after: Map.get(params, :cursor),
      deadline_ms: max(timeout - 500, 200),
      max_tables: Map.get(params, :max_tables, 100_000)
    }

    {answers, errors, agentless} =
      Ranking.fan_out(targets, Local, :tables_v1, [opts], timeout, [
        {ClusterScope.Redact, {:term, 2}}
      ])

    with {:ok, picked, more} <- Ranking.merge(answers, limit) do
      rows = Enum.map(picked, fn {node, row} -> present(node, row) end)

      next =
        case {more, List.last(picked)} do
          {true, {node, row}} -> Ranking.encode_cursor(sort_by, row.value, node, row.id)
          _ -> nil
        end

      {:ok,
       %{
         tables: rows,
         next_cursor: next,
         sort_by: sort_by,
         limit: limit,
         per_node: Enum.map(answers, &per_node/1),
         nodes: Enum.map(answers, &elem(&1, 0)),
         agentless: agentless,
         node_errors: skipped ++ errors
       }}
    end
  end

  defp per_node({node, a}) do
    %{
      node: node,
      tables: a.total,
      scanned: a.scanned,
      matching: a.eligible,
      memory_bytes: a.memory_bytes,
      timed_out: a.timed_out,
      truncated: a.truncated
    }
  end

  defp present(node, row) do
    %{
      node: node,
      id: row.id,
      name: row.name,
      named: row.named,
      owner: pid_text(row.owner),
      owner_name: row.owner_name,
      heir: pid_text(row.heir),
      type: row.type,
      protection: row.protection,
      size: row.size,
      memory_bytes: row.memory_bytes,
      keypos: row.keypos,
      compressed: row.compressed,
      read_concurrency: row.read_concurrency,
      write_concurrency: row.write_concurrency
    }
  end

  defp pid_text(pid) when is_pid(pid), do: ProcessRef.to_string(pid)
  defp pid_text(_), do: nil

  @doc """
  One page of `table` (its id text from `tables/1`: the name of a named
  table, else `#Ref<...>`) on `node`: at most `limit` objects after
  `cursor` (a `next_cursor` of the previous page), redacted. Errors name
  the field: `table` (no such table, or private), `cursor`.
  """
  @spec page(node(), binary(), binary() | nil, pos_integer()) :: {:ok, map()} | {:error, term()}
  def page(node, table, cursor, limit) do
    secrets = {Config.get(:redact_keys), Secrets.tokens()}

    with {:ok, after_key} <- decode_page_cursor(cursor),
         {[{^node, answer}], [], agentless} <-
           Ranking.fan_out(
             [node],
             Local,
             :page_v1,
             [table, after_key, limit, secrets],
             Fanout.default_timeout(),
             [{ClusterScope.Redact, {:term, 2}}]
           ),
         {:ok, page} <- page_answer(answer, node, table) do
      {next, cursor_note} = page_cursor(page.next_key)

      {:ok,
       %{
         node: node,
         table: table,
         type: page.type,
         protection: page.protection,
         size: page.size,
         objects: page.objects,
         count: length(page.objects),
         limit: limit,
         next_cursor: next,
         cursor_note: cursor_note,
         key_cut: page.cut_key,
         agentless: agentless != []
       }}
    else
      {[], [error], _} -> {:error, {:node_unavailable, node, error.reason}}
      {:error, _} = error -> error
    end
  end

  defp page_answer({:ok, page}, _node, _table), do: {:ok, page}

  defp page_answer({:error, :no_table}, node, table) do
    {:error,
     {:not_found, "table: no ETS table #{inspect(table)} on #{node}",
      %{field: "table", node: node}}}
  end

  defp page_answer({:error, :private}, node, table) do
    {:error,
     {:invalid_params,
      "table: #{inspect(table)} on #{node} is private: only its owner can read it",
      %{field: "table", node: node}}}
  end

  defp page_answer({:error, :cursor_gone}, _node, _table) do
    {:error,
     {:invalid_params, "cursor: its key is no longer in the table; start again without a cursor",
      %{field: "cursor"}}}
  end

  # The largest encoded key a cursor carries (the parameter's max_length).
  @max_cursor 1_000

  # The next key travels in the cursor; a key that holds a secret or is too
  # large to carry ends the paging here rather than leak or bloat.
  defp page_cursor(nil), do: {nil, nil}

  defp page_cursor({:key, key}) do
    text = Base.url_encode64(:erlang.term_to_binary(key), padding: false)

    cond do
      Secrets.redact(key) != key ->
        {nil, "the last key holds a secret: no cursor is given past it"}

      byte_size(text) > @max_cursor ->
        {nil, "the last key is too large to carry in a cursor"}

      true ->
        {text, nil}
    end
  end

  @doc false
  @spec decode_page_cursor(binary() | nil) :: {:ok, nil | {:after, term()}} | {:error, term()}
  def decode_page_cursor(nil), do: {:ok, nil}

  def decode_page_cursor(text) when is_binary(text) do
    with {:ok, bin} <- Base.url_decode64(text, padding: false),
         {:ok, key} <- safe_term(bin) do
      {:ok, {:after, key}}
    else
      _ ->
        {:error,
         {:invalid_params, "cursor: is not a next_cursor of this operation", %{field: "cursor"}}}
    end
  end

  # `:safe` refuses atoms that do not exist yet (and functions).
  defp safe_term(bin) do
    {:ok, :erlang.binary_to_term(bin, [:safe])}
  rescue
    ArgumentError -> :error
  end
end
