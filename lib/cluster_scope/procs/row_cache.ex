defmodule ClusterScope.Procs.RowCache do
  @moduledoc """
  What does not change while a process lives (its initial call, its
  application from its group leader, what decides its type), kept by pid
  between collections so a collection reads a known process without its
  dictionary (`ClusterScope.Procs.Rows.cached_rows/4`).

  An ETS table owned by `ClusterScope.Procs.Snapshots`: public so the
  collection's workers write it, at most `max_entries/0` process entries
  (a pid and an id each; the distinct values are stored once), and swept
  of dead processes after each collection of this node by a low-priority
  process (`sweep/0`), so it never holds more than the processes alive at
  the last collection plus those that died since. A collection while the
  table does not exist reads every process whole, as before.
  """

  alias ClusterScope.Procs.Rows

  @table :cluster_scope_proc_rows

  @doc "The table's name."
  @spec table() :: atom()
  def table, do: @table

  @doc "At most this many processes are cached: twice the process limit, at most 4,000,000."
  @spec max_entries() :: pos_integer()
  def max_entries, do: min(2 * :erlang.system_info(:process_limit), 4_000_000)

  @doc "Creates the table, owned by the caller (the snapshot server)."
  @spec new() :: :ets.tid() | atom()
  def new do
    :ets.new(@table, [
      :named_table,
      :public,
      :set,
      read_concurrency: true,
      write_concurrency: true
    ])
  end

  @doc "The table when it exists, else `nil`."
  @spec whereis() :: atom() | nil
  def whereis do
    case :ets.whereis(@table) do
      :undefined -> nil
      _ -> @table
    end
  end

  @doc "Processes cached now (entries keyed by a pid)."
  @spec size() :: non_neg_integer()
  def size do
    case whereis() do
      nil -> 0
      t -> :ets.select_count(t, [{{:"$1", :_}, [{:is_pid, :"$1"}], [true]}])
    end
  end

  @doc "Whether `pid` is cached."
  @spec cached?(pid()) :: boolean()
  def cached?(pid) do
    case whereis() do
      nil -> false
      t -> :ets.member(t, pid)
    end
  end

  @doc """
  Drops the entries of dead processes (see `ClusterScope.Procs.Rows.sweep_cache/1`).
  Returns how many it dropped, 0 when there is no table.
  """
  @spec sweep() :: non_neg_integer()
  def sweep do
    case whereis() do
      nil -> 0
      t -> Rows.sweep_cache(t)
    end
  end
end
