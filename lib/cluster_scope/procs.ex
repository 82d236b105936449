defmodule ClusterScope.Procs do
  @moduledoc """
  Every process of every node as one view.

  Each node summarises its own processes in Rust (counts by status,
  application, initial call, module and type; top-K by memory, reductions,
  message queue and heap; log2 histograms) and ships a summary of a few
  kilobytes; the caller merges the summaries in Rust. Raw rows cross the
  network only a page at a time (`list/1`). Nodes are called in parallel,
  each bounded by the node timeout; a node that does not answer is in
  `node_errors` with its status while the others answer (principle 3:
  degrade, never fail). A connected node without ClusterScope is read
  through `ClusterScope.Procs.Agentless` and marked `agentless: true`.

  ## Cost on each node

  Each agent answers for itself in `ClusterScope.Agent.Processes`, which
  says what each question reads there and what it costs: a page ranked by
  one key reads that one number of every process, the distribution reads
  memory and group leader, a window with no row filter three numbers at
  both ends, anything else full rows (about 2-3 µs a process). Walks run
  on one or two schedulers with a bounded heap and are shared by every
  caller for `max_age_ms` (default 1000), one at a time; concurrent
  windows of a node share their two walks (70 requests for a 30 s window
  cost one window, not 70). Summaries, pages and windows run on dirty
  schedulers. An agentless node's snapshots are kept and shared the same
  way on the node that reads it. A node that does not answer within the
  timeout is in `node_errors` with status `:timeout`.

  ## Options

    * `:node` - only this node (default: every connected node)
    * `:application` - owning application name (string)
    * `:type` - `:supervisor`, `:gen_server`, `:gen_statem`, `:gen_event`,
      `:task`, `:proc_lib` or `:plain`
    * `:name` - glob (`*`, `?`) on registered name, initial call or
      current function, e.g. `"Elixir.MyApp.*"`
    * `:min_memory` (bytes), `:min_queue` (messages)
    * `:sort_by` - `:memory` (default), `:reductions`, `:message_queue_len`,
      `:heap_size`
    * `:limit` - rows per page, 1..1000, default 50
    * `:cursor` - `next_cursor` of the previous page
    * `:window_ms` - window mode: rank by change over this interval
    * `:max_age_ms` - reuse a node's snapshot up to this age (default 1000)
  """

  alias ClusterScope.{Fanout, Native, ProcessRef}
  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Agent.Processes, as: AgentProcesses
  alias ClusterScope.Agent.Processes.{Rows, Snapshots}
  alias ClusterScope.Simulator.Data, as: SimData

  @sort_fields [:memory, :reductions, :message_queue_len, :heap_size]
  @types [:supervisor, :gen_server, :gen_statem, :gen_event, :task, :proc_lib, :plain]

  @doc "The fields a list can be sorted by."
  @spec sort_fields() :: [atom()]
  def sort_fields, do: @sort_fields

  @doc "The process types."
  @spec types() :: [atom()]
  def types, do: @types

  # ---------------------------------------------------------------------
  # Cluster-wide

  @doc """
  The merged summary of every node's processes (see the module doc for
  options; `:k` is the top-K size, default 20). Returns `{:ok, %{summary:,
  nodes:, agentless:, node_errors:}}`.
  """
  @spec summary(keyword() | map()) :: {:ok, map()} | {:error, term()}
  def summary(opts \\ []) do
    opts = normalize(opts)
    native_opts = Map.put(opts.filter, :k, opts.k)

    {answers, errors, agentless} =
      fan_out(opts, {:summary, [opts]}, fn node, snapshot ->
        Native.procs_summary(snapshot, Atom.to_string(node), native_opts)
      end)

    with {:ok, merged} <- merge(answers, :summary),
         {:ok, term} <- Native.procs_summary_to_term(merged) do
      {:ok, result(%{summary: present_summary(term)}, answers, errors, agentless)}
    end
  end

  @doc """
  One page of processes across the cluster, in the order of `:sort_by`
  (largest first; ties by node, then pid), with a `next_cursor` for the next
  page (`nil` on the last one). Rows carry their node; `agentless: true`
  marks rows read from a node without ClusterScope.
  """
  @spec list(keyword() | map()) :: {:ok, map()} | {:error, term()}
  def list(opts \\ []) do
    opts = normalize(opts)

    if opts.window_ms, do: window_list(opts), else: page_list(opts)
  end

  defp page_list(opts) do
    {answers, errors, agentless} =
      fan_out(opts, {:page, [opts]}, fn node, snapshot ->
        agentless_page(node, snapshot, opts)
      end)

    pages = for {node, page} <- answers, do: {node, page}
    {rows, more?} = merge_pages(pages, opts)

    next_cursor =
      case {more?, List.last(rows)} do
        {true, %{} = last} ->
          encode_cursor(opts.sort_by, sort_value(last, opts.sort_by), last.pid)

        _ ->
          nil
      end

    {:ok,
     result(
       %{processes: rows, next_cursor: next_cursor, sort_by: opts.sort_by, limit: opts.limit},
       answers,
       errors,
       agentless
     )}
  end

  defp window_list(opts) do
    {answers, errors, agentless} =
      fan_out(opts, {:window, [opts]}, fn node, _snapshot ->
        agentless_window(node, opts)
      end)

    with {:ok, merged} <- merge(answers, :window),
         {:ok, term} <- Native.procs_window_to_term(merged) do
      window = present_window(term)

      rows =
        case opts.sort_by do
          :memory -> window.top.memory
          :message_queue_len -> window.top.message_queue_len
          _ -> window.top.reductions
        end

      {:ok,
       result(
         %{
           processes: Enum.take(rows, opts.limit),
           next_cursor: nil,
           sort_by: opts.sort_by,
           limit: opts.limit,
           window: Map.delete(window, :top)
         },
         answers,
         errors,
         agentless
       )}
    end
  end

  @doc """
  Node × application counts and memory: the data of a heat map. Returns
  `{:ok, %{nodes:, applications:, cells:, per_node:, node_errors:}}`, where
  each cell is `%{node:, application:, count:, memory:}`.
  """
  @spec distribution(keyword() | map()) :: {:ok, map()} | {:error, term()}
  def distribution(opts \\ []) do
    opts = normalize(opts)
    native_opts = Map.put(opts.filter, :k, 1)

    # Agents read only memory and group leader when the filter allows it
    # (Agent.Processes.Grouped); a node that does not know `groups_only`
    # sends a summary, which is read the same way.
    node_opts = Map.put(%{opts | k: 1}, :groups_only, :application)

    {answers, errors, agentless} =
      fan_out(opts, {:summary, [node_opts]}, fn node, snapshot ->
        Native.procs_summary(snapshot, Atom.to_string(node), native_opts)
      end)

    per_node = Enum.flat_map(answers, fn {node, answer} -> distribution_entry(node, answer) end)

    cells =
      for n <- per_node, g <- n.applications do
        %{node: n.node, application: g.key, count: g.count, memory: g.memory}
      end

    apps =
      cells
      |> Enum.group_by(& &1.application, & &1.count)
      |> Enum.sort_by(fn {app, counts} -> {-Enum.sum(counts), app} end)
      |> Enum.map(&elem(&1, 0))

    {:ok,
     result(
       %{
         nodes: Enum.map(per_node, & &1.node),
         applications: apps,
         cells: cells,
         per_node: Enum.map(per_node, &Map.delete(&1, :applications))
       },
       answers,
       errors,
       agentless
     )}
  end

  defp distribution_entry(node, {:groups, g}) do
    [
      %{
        node: Atom.to_string(node),
        process_count: g.process_count,
        matched: g.matched,
        memory: g.memory,
        applications: g.applications
      }
    ]
  end

  defp distribution_entry(node, bin) when is_binary(bin) do
    case Native.procs_summary_to_term(bin) do
      {:ok, term} ->
        s = present_summary(term)

        [
          %{
            node: Atom.to_string(node),
            process_count: s.process_count,
            matched: s.matched,
            memory: s.totals.memory,
            applications: s.groups.application.entries
          }
        ]

      _ ->
        []
    end
  end

  defp agentless_page(node, snapshot, opts) do
    after_key =
      case AgentProcesses.after_cursor(opts.cursor, node) do
        nil -> nil
        {value, {id, serial}} -> {value, Rows.key(id, serial)}
        other -> other
      end

    with {:ok, rows, next} <-
           Native.procs_page(snapshot, AgentProcesses.page_opts(opts, after_key)) do
      {:ok, %{rows: Enum.map(rows, &present_agentless_row(&1, node)), more: next != nil}}
    end
  end

  # Agentless: two collections over the network, window_ms apart, shared
  # with every concurrent window request for that node served here.
  defp agentless_window(node, opts) do
    with {:ok, before, later} <-
           Snapshots.window({:agentless, node}, opts.window_ms, opts.timeout) do
      Native.procs_window(
        before.snapshot,
        later.snapshot,
        Atom.to_string(node),
        max(later.taken_at_ms - before.taken_at_ms, 1),
        Map.put(opts.filter, :k, opts.limit)
      )
    end
  end

  # Pages rank heap_size by the total heap (heap, old heap, fragments).
  defp sort_value(row, :heap_size), do: row.total_heap_size
  defp sort_value(row, field), do: Map.fetch!(row, field)

  defp merge_pages(pages, opts) do
    field = opts.sort_by

    rows =
      pages
      |> Enum.flat_map(fn {_node, page} -> page.rows end)
      # Stable: rows of one node keep that node's (pid) order on ties.
      |> Enum.sort_by(fn row -> {-sort_value(row, field), row.node} end)

    more? = length(rows) > opts.limit or Enum.any?(pages, fn {_, page} -> page.more end)
    {Enum.take(rows, opts.limit), more?}
  end

  # ---------------------------------------------------------------------
  # Fan-out: agents answer for themselves; agentless nodes are collected
  # from here; nodes this node already sees as down are not called.

  defp fan_out(opts, {fun, args}, agentless_fun) do
    {agents, agentless, skipped} = targets(opts.node)
    # Sandboxes run on agent nodes only.
    agentless = if opts[:sandbox], do: [], else: agentless
    timeout = opts.timeout

    agent_task =
      Task.async(fn -> Fanout.multicall(agents, AgentProcesses, fun, args, timeout) end)

    agentless_tasks =
      Enum.map(agentless, fn node ->
        {node,
         Task.async(fn ->
           try do
             with {:ok, snapshot} <- agentless_snapshot(node, fun, opts) do
               agentless_fun.(node, snapshot)
             end
           catch
             kind, reason -> {:error, {kind, reason}}
           end
         end)}
      end)

    {agent_answers, agent_errors} = Task.await(agent_task, :infinity)

    {answers, refused} =
      Enum.reduce(agent_answers, {[], []}, fn
        {node, {:ok, value}}, {oks, errs} -> {[{node, value} | oks], errs}
        {node, {:error, reason}}, {oks, errs} -> {oks, [refusal(node, reason) | errs]}
      end)

    {agentless_answers, agentless_errors} =
      Enum.reduce(agentless_tasks, {[], []}, fn {node, task}, {oks, errs} ->
        case Task.yield(task, timeout + 1_000) || Task.shutdown(task, :brutal_kill) do
          {:ok, {:ok, value}} -> {[{node, value} | oks], errs}
          {:ok, {:error, reason}} -> {oks, [agentless_error(node, reason) | errs]}
          nil -> {oks, [agentless_error(node, :timeout) | errs]}
          {:exit, reason} -> {oks, [agentless_error(node, reason) | errs]}
        end
      end)

    # Agentless nodes are read by a shared collection (no run context):
    # reported here, for the answer's nodes_answered.
    ClusterScope.Fanout.Retry.answered(Enum.map(agentless_answers, &elem(&1, 0)))

    {Enum.sort_by(Enum.reverse(answers) ++ agentless_answers, &Atom.to_string(elem(&1, 0))),
     skipped ++ agent_errors ++ Enum.reverse(refused) ++ agentless_errors,
     agentless_answers |> Enum.map(&elem(&1, 0)) |> Enum.sort()}
    |> simulated(opts, fun)
  end

  # Simulated mode: the virtual nodes answer too, from generated rows
  # (ClusterScope.Simulator.Data) in a Rust snapshot, paged, summarised and
  # windowed by the same core as an agentless node's; they run no sandbox.
  defp simulated({answers, errors, agentless} = result, opts, fun) do
    if SimData.active?() and opts[:sandbox] == nil do
      {up, virtual_errors} = SimData.targets(opts.node)
      answered = Enum.map(up, &{&1, simulated_answer(&1, fun, opts)})
      virtual = for {node, {:ok, answer}} <- answered, do: {node, answer}
      failed = for {node, {:error, reason}} <- answered, do: refusal(node, reason)

      {Enum.sort_by(answers ++ virtual, &Atom.to_string(elem(&1, 0))),
       SimData.drop_virtual(errors) ++ virtual_errors ++ failed, agentless}
    else
      result
    end
  end

  defp simulated_answer(node, :window, opts) do
    # Two simulated snapshots window_ms apart, ending now.
    later_ms = SimData.now()
    before_ms = max(later_ms - opts.window_ms, 0)

    with {:ok, before} <- SimData.snapshot(node, before_ms),
         {:ok, later} <- SimData.snapshot(node, later_ms),
         {:ok, bin} <-
           Native.procs_window(
             before,
             later,
             Atom.to_string(node),
             max(later_ms - before_ms, 1),
             Map.put(opts.filter, :k, opts.limit)
           ) do
      {:ok, bin}
    end
  end

  defp simulated_answer(node, :page, opts) do
    with {:ok, snapshot} <- SimData.snapshot(node),
         {:ok, page} <- agentless_page(node, snapshot, opts) do
      {:ok, %{page | rows: Enum.map(page.rows, &Map.delete(&1, :agentless))}}
    end
  end

  defp simulated_answer(node, :summary, opts) do
    native_opts = Map.put(opts.filter, :k, opts.k)

    with {:ok, snapshot} <- SimData.snapshot(node),
         do: Native.procs_summary(snapshot, Atom.to_string(node), native_opts)
  end

  # Agentless snapshots are kept and shared here like a node keeps its own.
  defp agentless_snapshot(_node, :window, _opts), do: {:ok, nil}

  defp agentless_snapshot(node, _fun, opts) do
    with {:ok, %{snapshot: snapshot}} <-
           Snapshots.get({:agentless, node}, opts.max_age_ms, opts.timeout),
         do: {:ok, snapshot}
  end

  @doc """
  The nodes a cluster-wide call goes to: `{agents, agentless, skipped}`,
  where `skipped` are node errors for known nodes this node sees as not up.
  """
  @spec targets(node() | nil) :: {[node()], [node()], [Fanout.node_error()]}
  def targets(only \\ nil) do
    connected = [node() | Node.list()]
    agents = Enum.filter(Heartbeat.agent_nodes(), &(&1 in connected))
    agents = if node() in agents, do: agents, else: [node() | agents]

    skipped =
      for {n, status} <- Fanout.node_statuses(),
          n not in connected,
          only in [nil, n],
          do: Fanout.not_called(n, status)

    keep = fn nodes -> if only, do: Enum.filter(nodes, &(&1 == only)), else: nodes end
    {keep.(agents), keep.(connected -- agents), skipped}
  end

  defp refusal(node, reason) do
    %{
      node: node,
      status: :error,
      reason: "#{node} could not read its processes: #{inspect(reason, limit: 10)}",
      remediation: "See #{node}'s log; a timeout means a very large process count or a busy node."
    }
  end

  defp agentless_error(node, reason) do
    %{
      node: node,
      status: if(reason == :timeout, do: :timeout, else: :error),
      agentless: true,
      reason: "could not read #{node} without an agent: #{inspect(reason, limit: 10)}",
      remediation:
        "Add :cluster_scope to #{node}'s release for a cheaper, local summary, or raise node_timeout_ms."
    }
  end

  defp merge([], kind) do
    # No node answered: an empty summary (or window) of no node.
    empty = Native.procs_snapshot_new()

    case kind do
      :summary -> Native.procs_summary(empty, "", %{k: 1})
      :window -> Native.procs_window(empty, empty, "", 1, %{k: 1})
    end
  end

  defp merge(answers, :summary), do: Native.procs_summary_merge(Enum.map(answers, &elem(&1, 1)))
  defp merge(answers, :window), do: Native.procs_window_merge(Enum.map(answers, &elem(&1, 1)))

  defp result(map, answers, errors, agentless) do
    Map.merge(map, %{
      nodes: Enum.map(answers, &elem(&1, 0)),
      agentless: agentless,
      node_errors: errors
    })
  end

  # ---------------------------------------------------------------------
  # Presentation: pids in their one text form, with their node.

  defp present_summary(term) do
    top = Map.new(term.top, fn {field, rows} -> {field, Enum.map(rows, &present_text_row/1)} end)
    %{term | top: top}
  end

  defp present_window(term), do: present_summary(term)

  # Rows of merged summaries carry the pid as "<0.ID.SERIAL>" and the node
  # as text.
  defp present_text_row(%{pid: "<" <> rest, node: node} = row) do
    row = Map.delete(row, :key)
    %{row | pid: String.trim_trailing(rest, ">") <> "@" <> node}
  end

  defp present_agentless_row(%{pid: key} = row, node) when is_integer(key) do
    {id, serial} = Rows.numbers(key)
    ref = %ProcessRef{node: node, id: id, serial: serial}

    %{row | pid: ProcessRef.to_string(ref)}
    |> Map.put(:node, Atom.to_string(node))
    |> Map.put(:agentless, true)
  end

  # ---------------------------------------------------------------------
  # Options

  @doc false
  def normalize(%{filter: _} = opts), do: opts
  def normalize(opts) when is_list(opts), do: normalize(Map.new(opts))

  def normalize(opts) when is_map(opts) do
    filter =
      %{
        application: opts[:application],
        type: opts[:type],
        name_pattern: opts[:name],
        min_memory: opts[:min_memory],
        min_queue: opts[:min_queue]
      }
      |> Enum.reject(fn {_, v} -> is_nil(v) end)
      |> Map.new()

    window_ms = opts[:window_ms]
    window_ms = if window_ms in [nil, 0], do: nil, else: window_ms
    timeout = opts[:timeout] || Fanout.default_timeout()

    %{
      node: opts[:node],
      sandbox: opts[:sandbox],
      filter: filter,
      sort_by: opts[:sort_by] || :memory,
      limit: opts[:limit] || 50,
      k: opts[:k] || 20,
      cursor: opts[:cursor],
      window_ms: window_ms,
      max_age_ms: opts[:max_age_ms] || 1_000,
      # A window collects twice: allow both collections their full time.
      timeout: if(window_ms, do: 2 * timeout + window_ms, else: timeout)
    }
  end

  @doc """
  The cursor of a page: opaque text naming the sort field, the last value
  and the last process.
  """
  @spec encode_cursor(atom(), non_neg_integer(), String.t()) :: String.t()
  def encode_cursor(sort_by, value, pid_text) do
    Base.url_encode64("#{sort_by}|#{value}|#{pid_text}", padding: false)
  end

  @doc """
  Reads a cursor made by `encode_cursor/3` for a list sorted by `sort_by`.
  Never creates an atom: the node must be a known one.
  """
  @spec decode_cursor(String.t(), atom(), [node()]) :: {:ok, map()} | {:error, String.t()}
  def decode_cursor(
        text,
        sort_by,
        known \\ [node() | Node.list(:connected)] ++ ClusterScope.Simulator.virtual_nodes()
      ) do
    expected = Atom.to_string(sort_by)

    with {:ok, raw} <- Base.url_decode64(text, padding: false),
         [^expected, value, pid] <- String.split(raw, "|", parts: 3),
         {value, ""} when value >= 0 <- Integer.parse(value),
         {:ok, ref} <- ProcessRef.parse(pid, known) do
      {:ok, %{value: value, ref: ref}}
    else
      [other, _, _] when is_binary(other) ->
        {:error, "was made for a list sorted by #{other}, not by #{expected}"}

      {:error, message} when is_binary(message) ->
        {:error, "is not a cursor of this list: its process #{message}"}

      _ ->
        {:error, "is not a cursor returned by this list"}
    end
  end
end
