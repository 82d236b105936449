defmodule ClusterScope.Agent.Processes.RowCache do
  @moduledoc """
  What does not change while a process lives (its initial call, its
  application from its group leader, what decides its type), kept by pid
  between collections for processes with a large dictionary, so a
  collection reads them without copying it again
  (`ClusterScope.Agent.Processes.Rows.cached_rows/4`).

  Why only those: every read of a process's memory is a signal the
  process must handle (OTP's `process_info/2` forces it for `memory`,
  `total_heap_size`, `current_function` and `dictionary`), and that signal
  dominates. Measured at 100,000 processes with two-entry dictionaries, a
  per-process ETS lookup plus the 9-item read took as long as the 12-item
  read it replaced (250-290 ms both, 2 loaded cores). A large dictionary
  is copied at every read: there the cache pays, and it stays small.

  An ETS table owned by `ClusterScope.Agent.Processes.Snapshots`: public so the
  collection's workers write it, at most `max_entries/0` entries, read
  once per collection worker (a map), and swept of dead processes after
  each collection of this node by a low-priority process (`sweep/0`). A
  collection while the table does not exist reads every process whole.
  """

  alias ClusterScope.Agent.Processes.Rows

  @table :cluster_scope_proc_rows

  @doc "The table's name."
  @spec table() :: atom()
  def table, do: @table

  @doc "At most this many processes are cached."
  @spec max_entries() :: pos_integer()
  def max_entries, do: 100_000

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

  @doc "Processes cached now."
  @spec size() :: non_neg_integer()
  def size do
    case whereis() do
      nil -> 0
      t -> :ets.info(t, :size)
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
  Drops the entries of dead processes (see `ClusterScope.Agent.Processes.Rows.sweep_cache/1`).
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
