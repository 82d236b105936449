defmodule ClusterScope.Agent.Processes.Ranked do
  @moduledoc """
  A top-K by one key that reads only that key: the first page of
  `ClusterScope.Procs.list/1` (and every later one) when it ranks by one
  number and filters by nothing else.

  ## How

    1. **One number of every process.** `collect/2` walks every process
       (`ClusterScope.Agent.Processes.Walker`: one or two workers, ClusterScope's
       walk excluded) and reads one `process_info/2` item each, a single
       atom (`:memory`, `:reductions`, `:message_queue_len` or
       `:total_heap_size`: no item list is built, one small tuple comes
       back), into a Rust column of `(pid, value)`, 16 bytes a process.
       `ClusterScope.Agent.Processes.Snapshots` keeps the column of each key for
       `max_age_ms` and shares it between callers like a snapshot.
    2. **The page in Rust.** `ClusterScope.Native.procs_column_page/2`
       ranks the column (value descending, pid ascending, strictly after
       the cursor, at least the `min_memory`/`min_queue` bound) with a
       bounded heap.
    3. **Details of the winners only.** `page/5` reads each winner's row
       (`ClusterScope.Agent.Processes.Rows.row/3`: the ~12 fields a list shows) and
       keeps the value it was ranked by, so the order and the cursor stay
       those of the ranking. A winner that died meanwhile is dropped and
       the next one in the ranking takes its place (more are fetched when
       needed), so a page is full whenever enough processes live.

  Cost at 1,000,000 processes: one item read per process (about a fifth
  of a full row, no dictionary copied), a 16 MB column, a page pass of a
  few milliseconds, then `limit + 1` rows read. A full snapshot
  (`ClusterScope.Agent.Processes.Collector`) reads every field of every process:
  it is what summaries, other filters and windows need.
  """

  alias ClusterScope.Native
  alias ClusterScope.Agent.Processes.{Rows, Walker}

  # The process_info item of each sort key; `heap_size` ranks by the
  # total heap (heap, old heap and fragments), as the snapshot pages do.
  @items %{
    memory: :memory,
    reductions: :reductions,
    message_queue_len: :message_queue_len,
    heap_size: :total_heap_size
  }

  # The position of each key's value in a row tuple (0-based).
  @row_index %{memory: 1, reductions: 2, message_queue_len: 3, heap_size: 6}

  @doc "The sort keys a column can rank by."
  @spec keys() :: [atom()]
  def keys, do: Map.keys(@items)

  @doc """
  Whether a page ranked by `sort_by` with `filter` (the normalized filter
  of `ClusterScope.Procs`) can be answered from the column of `sort_by`
  alone: no filter, or only the lower bound on that same key.
  """
  @spec answers?(map(), atom()) :: boolean()
  def answers?(filter, sort_by) when map_size(filter) == 0, do: Map.has_key?(@items, sort_by)
  def answers?(%{min_memory: _} = f, :memory) when map_size(f) == 1, do: true
  def answers?(%{min_queue: _} = f, :message_queue_len) when map_size(f) == 1, do: true
  def answers?(_filter, _sort_by), do: false

  @doc """
  The lower bound of `filter` on `sort_by`'s value, or `nil`.
  """
  @spec min_of(map(), atom()) :: non_neg_integer() | nil
  def min_of(%{min_memory: min}, :memory), do: min
  def min_of(%{min_queue: min}, :message_queue_len), do: min
  def min_of(_filter, _sort_by), do: nil

  @doc """
  Walks every process reading only `sort_by`'s item into a new column.
  Options as `ClusterScope.Agent.Processes.Walker.walk/3`. Returns `{:ok, column,
  %{processes:, duration_us:, taken_at_ms:}}`.
  """
  @spec collect(atom(), keyword()) :: {:ok, reference(), map()} | {:error, term()}
  def collect(sort_by, opts \\ []) do
    item = Map.fetch!(@items, sort_by)
    started = System.monotonic_time(:microsecond)

    with column when is_reference(column) <- Native.procs_column_new(),
         {:ok, _} <- Walker.walk(fn -> nil end, &push(&1, &2, column, item), opts) do
      %{rows: rows} = Native.procs_column_info(column)

      {:ok, column, ClusterScope.Agent.Processes.Collector.stats(rows, started, nil)}
    else
      {:error, _} = error -> error
      other -> {:error, other}
    end
  end

  defp push(pids, state, column, item) do
    case Native.procs_column_push(column, pids, values(pids, item)) do
      :ok -> {:ok, state}
      {:error, _} = error -> error
    end
  end

  # One single-item process_info per pid; :undefined for a process gone.
  defp values([], _item), do: []

  defp values([pid | rest], item) do
    value =
      case :erlang.process_info(pid, item) do
        {_, v} when is_integer(v) and v >= 0 -> v
        # Not a count the core takes (see Rows.count/1): ranked as if gone.
        {_, _} -> :undefined
        :undefined -> :undefined
      end

    [value | values(rest, item)]
  end

  @doc """
  The rows of the page after `after_key` (`nil`, or `{value, pid | nil |
  :max}` as `ClusterScope.Native.procs_page/2` takes it) of at most
  `limit` processes ranked by `sort_by` with values at least `min`, read
  now, each carrying the value it was ranked by. Returns `{:ok, rows,
  more?}` where `more?` says whether ranked processes follow.
  """
  @spec page(reference(), atom(), pos_integer(), term(), non_neg_integer() | nil) ::
          {:ok, [Rows.row()], boolean()} | {:error, term()}
  def page(column, sort_by, limit, after_key, min) do
    fetch(column, Map.fetch!(@row_index, sort_by), limit, after_key, min, Rows.context(), [], 0)
  end

  defp fetch(column, index, limit, after_key, min, ctx, acc, n) do
    # One more than the page, to know whether more follow, and a few more
    # in case some winners died since the walk.
    want = min(limit + 1 - n + 4, 1000)

    case Native.procs_column_page(column, %{limit: want, min: min, after: after_key}) do
      {:ok, entries, more} ->
        {live, ctx} = details(entries, index, ctx, [])
        acc = acc ++ live
        n = n + length(live)

        cond do
          n > limit ->
            {:ok, Enum.take(acc, limit), true}

          not more ->
            {:ok, acc, false}

          true ->
            {pid, value} = List.last(entries)
            fetch(column, index, limit, {value, pid}, min, ctx, acc, n)
        end

      {:error, _} = error ->
        error
    end
  end

  defp details([], _index, ctx, acc), do: {Enum.reverse(acc), ctx}

  defp details([{pid, value} | rest], index, ctx, acc) do
    case Rows.row(pid, :pid, ctx) do
      {nil, ctx} -> details(rest, index, ctx, acc)
      {row, ctx} -> details(rest, index, ctx, [put_elem(row, index, value) | acc])
    end
  end
end
