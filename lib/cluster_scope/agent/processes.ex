defmodule ClusterScope.Agent.Processes do
  @moduledoc """
  The node side of process queries: what this node answers about its own
  processes when `ClusterScope.Procs` asks every node (through
  `ClusterScope.Fanout`, in the protocol's version envelope).

  Each call takes the options `ClusterScope.Procs.normalize/1` makes (a map
  with `filter`, `sort_by`, `limit`, `k`, `cursor`, `window_ms`,
  `max_age_ms`, ...) and answers in the core's compact forms: a summary
  (`summary/1`) or window (`window/1`) of a few kilobytes that the caller
  merges in Rust, or one page of rows (`page/1`). Raw rows cross the
  network only a page at a time.

  ## Cost on this node

  Each question reads what it needs, and no more:

    * a page ranked by one key with no other filter reads that one number
      of every process, then the ~12 fields of the page's processes only
      (`ClusterScope.Agent.Processes.Ranked`);
    * the distribution (`summary/1` with `groups_only: :application`)
      reads memory and group leader (`ClusterScope.Agent.Processes.Grouped`);
    * a window with no row filter but the minimums reads three numbers of
      each process at both ends, then its winners whole;
    * summaries and other filters read full rows (about 2-3 µs a process,
      `ClusterScope.Agent.Processes.Collector`).

  Every walk runs on one or two schedulers
  (`ClusterScope.Agent.Processes.Walker`) with a heap bounded by one chunk,
  leaves ClusterScope's own walk out of its results, and is shared by every
  caller for `max_age_ms` through `ClusterScope.Agent.Processes.Snapshots`,
  one collection at a time: a burst of requests costs one walk, not one
  each. Concurrent windows of the same length share their two walks
  (`ClusterScope.Agent.Processes.Snapshots.window/3`). Summaries, pages and
  windows are computed by the core on dirty schedulers.

  Reading a process's memory makes it handle a signal (OTP's
  `process_info/2` forces it for that item), which sets the floor for
  anything ranked or summed by memory; nothing here reads a process's
  state or messages.
  """

  alias ClusterScope.{Native, ProcessRef}
  alias ClusterScope.Agent.Processes.{Grouped, Ranked, Rows, Snapshots}

  @typedoc "Options as made by `ClusterScope.Procs.normalize/1`."
  @type opts :: map()

  @typedoc "One page of this node's rows and whether more follow."
  @type page :: %{rows: [map()], more: boolean()}

  @doc """
  This node's summary of its processes: the core's serialised summary
  (counts by status, application, initial call, module and type; top-K of
  `opts.k` by memory, reductions, message queue and heap; histograms) of
  the processes `opts.filter` matches, named by this node.

  With `groups_only: :application` (the distribution) it answers
  `{:groups, groups}`, counts and memory by application only, from a fresh
  enough full snapshot if there is one, else from a walk of memory and
  group leader when the filter allows it (otherwise a full summary, read
  the same way by the caller).

  Cost: one shared walk at most per `max_age_ms` (see the module doc); the
  answer is a few kilobytes whatever the number of processes.
  """
  @spec summary(opts()) :: {:ok, binary() | {:groups, map()}} | {:error, term()}
  def summary(%{groups_only: :application} = opts) do
    with :none <- Snapshots.cached(:local, opts.max_age_ms),
         true <- Grouped.answers?(opts.filter),
         {:ok, %{snapshot: groups}} <-
           Snapshots.get({:groups, :application}, opts.max_age_ms, 30_000) do
      {:ok, {:groups, Grouped.answer(groups, opts.filter)}}
    else
      {:error, _} = error -> error
      _ -> summary(Map.delete(opts, :groups_only))
    end
  end

  def summary(opts) do
    with {:ok, %{snapshot: snapshot}} <- Snapshots.get(opts.max_age_ms) do
      Native.procs_summary(snapshot, Atom.to_string(node()), Map.put(opts.filter, :k, opts.k))
    end
  end

  @doc """
  One page of this node's processes in the order of `opts.sort_by`
  (largest first, ties by pid), after the cluster-wide cursor
  `opts.cursor`, at most `opts.limit` rows, each with its pid in text form
  and its node; `more` says whether this node has rows after the page.

  With `sandbox: id`, only the processes of that sandbox's part on this
  node are read, into a snapshot of their own.

  Cost: a fresh enough full snapshot answers any page; else a page ranked
  by one key with no other filter reads only that key of every process
  and the page's rows whole; other filters read full rows. Walks are
  shared for `max_age_ms`.
  """
  @spec page(opts()) :: {:ok, page()} | {:error, term()}
  def page(%{sandbox: id} = opts) when is_binary(id) do
    pids = ClusterScope.Sandbox.Agent.local_pids(id)
    {rows, _} = Rows.rows(pids, :pid, Rows.context())
    snapshot = Native.procs_snapshot_new()

    with :ok <- Native.procs_snapshot_push_dirty(snapshot, rows),
         {:ok, rows, next} <-
           Native.procs_page(snapshot, page_opts(opts, local_after(opts.cursor))) do
      {:ok, %{rows: Enum.map(rows, &present_row/1), more: next != nil}}
    end
  end

  def page(opts) do
    case Snapshots.cached(:local, opts.max_age_ms) do
      {:ok, %{snapshot: snapshot}} ->
        snapshot_page(snapshot, opts)

      :none ->
        if Ranked.answers?(opts.filter, opts.sort_by),
          do: ranked_page(opts),
          else: snapshot_page(nil, opts)
    end
  end

  defp ranked_page(opts) do
    with {:ok, %{snapshot: column}} <-
           Snapshots.get({:column, opts.sort_by}, opts.max_age_ms, 30_000),
         {:ok, rows, more?} <-
           Ranked.page(
             column,
             opts.sort_by,
             opts.limit,
             local_after(opts.cursor),
             Ranked.min_of(opts.filter, opts.sort_by)
           ),
         # The rows through a snapshot of their own: the same form and
         # order as every other page.
         snapshot = Native.procs_snapshot_new(),
         :ok <- Native.procs_snapshot_push_dirty(snapshot, rows),
         {:ok, rows, _} <-
           Native.procs_page(snapshot, page_opts(%{opts | filter: %{}}, nil)) do
      {:ok, %{rows: Enum.map(rows, &present_row/1), more: more?}}
    end
  end

  defp snapshot_page(snapshot, opts) do
    with {:ok, %{snapshot: snapshot}} <- snapshot_or_get(snapshot, opts.max_age_ms),
         after_key = local_after(opts.cursor),
         {:ok, rows, next} <- Native.procs_page(snapshot, page_opts(opts, after_key)) do
      {:ok, %{rows: Enum.map(rows, &present_row/1), more: next != nil}}
    end
  end

  defp snapshot_or_get(nil, max_age_ms), do: Snapshots.get(max_age_ms)
  defp snapshot_or_get(snapshot, _max_age_ms), do: {:ok, %{snapshot: snapshot}}

  @doc """
  This node's window: the change of each process over `opts.window_ms`
  (reductions, memory, message queue), its top `opts.limit` by each, as
  the core's serialised window named by this node.

  Cost: two walks `window_ms` apart, shared with every concurrent window
  request of the same length on this node. A window filtered by nothing
  but the minimums on memory or queue reads three numbers of each process
  at both ends, then the winners whole; other filters read full rows at
  both ends. The call lasts at least `window_ms`.
  """
  @spec window(opts()) :: {:ok, binary()} | {:error, term()}
  def window(opts) do
    thin? = Map.keys(opts.filter) -- [:min_memory, :min_queue] == []
    source = if thin?, do: :thin, else: :local

    with {:ok, before, later} <- Snapshots.window(source, opts.window_ms, 30_000),
         interval = max(later.taken_at_ms - before.taken_at_ms, 1),
         {:ok, bin} <-
           Native.procs_window(
             before.snapshot,
             later.snapshot,
             Atom.to_string(node()),
             interval,
             Map.put(opts.filter, :k, opts.limit)
           ) do
      if thin?, do: window_details(bin), else: {:ok, bin}
    end
  end

  # The identity of the window's winners, read now.
  defp window_details(bin) do
    with {:ok, term} <- Native.procs_window_to_term(bin) do
      pids =
        for {_, rows} <- term.top, %{pid: text} <- rows, uniq: true do
          :erlang.list_to_pid(String.to_charlist(text))
        end

      {rows, _} = Rows.rows(pids, :pid, Rows.context())
      details = Native.procs_snapshot_new()

      with :ok <- Native.procs_snapshot_push_dirty(details, rows),
           do: Native.procs_window_details(bin, details)
    end
  end

  @doc """
  The core's page options of a request: its filter, sort, limit and the
  key to start after. Shared with the caller, which pages the snapshots of
  agentless and virtual nodes the same way.
  """
  @spec page_opts(opts(), term()) :: map()
  def page_opts(opts, after_key) do
    opts.filter
    |> Map.put(:sort_by, opts.sort_by)
    |> Map.put(:limit, opts.limit)
    |> Map.put(:after, after_key)
  end

  @doc """
  Where node `m`'s rows resume after a cluster-wide cursor (`nil` for the
  first page): `{value, {id, serial}}` on the cursor's own node,
  `{value, :max}` on a node that sorts before it (rows of an equal value
  were all shown), `{value, nil}` on one that sorts after it (none were).

  The cursor is (value, pid) of the last row shown; rows come in the order
  (value desc, node asc, pid asc). On node m the rows after it are those
  with a smaller value, plus those with an equal value when m sorts after
  the cursor's node, or is that node and the pid is later. Pure.
  """
  @spec after_cursor(map() | nil, node()) :: nil | {non_neg_integer(), term()}
  def after_cursor(nil, _node), do: nil

  def after_cursor(%{value: value, ref: %ProcessRef{node: n, id: id, serial: serial}}, m) do
    m = Atom.to_string(m)
    n = Atom.to_string(n)

    cond do
      m < n -> {value, :max}
      m == n -> {value, {id, serial}}
      true -> {value, nil}
    end
  end

  defp local_after(cursor) do
    case after_cursor(cursor, node()) do
      {value, {id, serial}} -> {value, :erlang.list_to_pid(~c"<0.#{id}.#{serial}>")}
      other -> other
    end
  end

  # Pids in their one text form, with their node.
  defp present_row(%{pid: pid} = row) when is_pid(pid) do
    %{row | pid: ProcessRef.to_string(pid)} |> Map.put(:node, Atom.to_string(node(pid)))
  end
end
