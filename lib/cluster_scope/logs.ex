defmodule ClusterScope.Logs do
  @moduledoc """
  Each node's recent log events, kept in a bounded ring so they can be read
  across the cluster (`cluster_logs`, `mix cluster_scope.logs`).

  A `:logger` handler (`ClusterScope.Logs.Handler`, id `:cluster_scope_logs`)
  copies every event at or above `:info` into an ETS ring of the last
  #{1_000} events of this node, each message formatted once and cut at
  #{2_048} bytes. This server owns the table and installs the handler; when it
  stops, the handler goes with it.

  ## Cost

  Per log event, in the process that logs: one message formatting bounded by
  a character limit, one atomic counter increment, one ETS insert and one
  delete (the oldest event). No message, no lock held, nothing that can
  block the logging process. Memory: at most #{1_000} events of at most
  ~2.5 KB each. A read scans at most the ring, newest first, and stops at
  its limit.

  ## What it protects against

  Log lines can hold anything the application printed: reading them is a
  `:sensitive` operation, and every answer goes through the runner's
  redaction (cookies, tokens, values under `redact_keys`). A handler that
  fails is removed by `:logger` itself; the handler catches everything so
  that does not happen because of a malformed event.
  """

  use GenServer

  @handler_id :cluster_scope_logs
  @max_events 1_000
  @max_message_bytes 2_048
  @levels [:emergency, :alert, :critical, :error, :warning, :notice, :info, :debug]

  @typedoc "One log event as answered: node-qualified, the message already text."
  @type entry :: %{
          node: node(),
          seq: pos_integer(),
          time_us: integer(),
          level: atom(),
          module: String.t() | nil,
          function: String.t() | nil,
          line: non_neg_integer() | nil,
          pid: String.t() | nil,
          message: String.t()
        }

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The log levels, most severe first."
  @spec levels() :: [atom()]
  def levels, do: @levels

  @doc "The handler's id in `:logger`."
  @spec handler_id() :: atom()
  def handler_id, do: @handler_id

  @doc "The most events a node keeps."
  @spec max_events() :: pos_integer()
  def max_events, do: @max_events

  @doc """
  This node's events that match, oldest first.

  Options: `:level` (this level or more severe), `:modules` (module names as
  Elixir writes them, `"MyApp.Cart"`; a prefix ending in `.` matches a
  namespace), `:contains` (text in the message, without regard to case),
  `:after` (only events with a greater `seq`), `:marks` (a follower's
  cursor: node name => seq, this node reads its own mark),
  `:limit` (at most this many: the newest ones, or with `:after` the
  oldest ones after it).

  Answers the entries and `last_seq`, the newest event's number here when
  the read began (a follower that saw nothing can start after it).
  """
  @spec recent(keyword()) ::
          {:ok, %{entries: [entry()], last_seq: non_neg_integer()}} | {:error, String.t()}
  def recent(opts \\ []) do
    case :ets.whereis(__MODULE__) do
      :undefined ->
        {:error, "ClusterScope's log ring does not run on #{node()}"}

      table ->
        last = with :"$end_of_table" <- :ets.last(table), do: 0
        {:ok, %{entries: select(table, opts), last_seq: last}}
    end
  end

  defp select(table, opts) do
    limit = min(Keyword.get(opts, :limit, 100), @max_events)
    keep? = matcher(opts)

    # A follower's cursor holds every node's mark: this node reads its own
    # (a node not in it joined meanwhile: from the start of its ring).
    after_seq =
      case Keyword.fetch(opts, :marks) do
        {:ok, marks} -> Map.get(marks, Atom.to_string(node()), 0)
        :error -> Keyword.get(opts, :after)
      end

    case after_seq do
      nil ->
        # The newest `limit` matches: walk back from the end.
        table |> walk(:ets.last(table), &:ets.prev/2, keep?, limit, []) |> Enum.map(&entry/1)

      seq ->
        table
        |> walk(:ets.next(table, seq), &:ets.next/2, keep?, limit, [])
        |> Enum.reverse()
        |> Enum.map(&entry/1)
    end
  end

  defp walk(_table, :"$end_of_table", _step, _keep?, _left, acc), do: acc
  defp walk(_table, _key, _step, _keep?, 0, acc), do: acc

  defp walk(table, key, step, keep?, left, acc) do
    case :ets.lookup(table, key) do
      [event] ->
        if keep?.(event),
          do: walk(table, step.(table, key), step, keep?, left - 1, [event | acc]),
          else: walk(table, step.(table, key), step, keep?, left, acc)

      [] ->
        # Trimmed meanwhile: go on from where it was.
        walk(table, step.(table, key), step, keep?, left, acc)
    end
  end

  defp matcher(opts) do
    level = Keyword.get(opts, :level)
    modules = Keyword.get(opts, :modules, [])
    contains = opts |> Keyword.get(:contains) |> downcase()

    fn {_seq, _time, lvl, module, _fun, _line, _pid, message} ->
      (level == nil or :logger.compare_levels(lvl, level) != :lt) and
        (modules == [] or module_match?(module, modules)) and
        (contains == nil or String.contains?(String.downcase(message), contains))
    end
  end

  defp downcase(nil), do: nil
  defp downcase(""), do: nil
  defp downcase(text), do: String.downcase(text)

  defp module_match?(nil, _), do: false

  defp module_match?(module, modules) do
    Enum.any?(modules, fn m ->
      module == m or (String.ends_with?(m, ".") and String.starts_with?(module, m))
    end)
  end

  defp entry({seq, time, level, module, function, line, pid, message}) do
    %{
      node: node(),
      seq: seq,
      time_us: time,
      level: level,
      module: module,
      function: function,
      line: line,
      pid: pid,
      message: message
    }
  end

  # -- server ------------------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    # The ring survives a crash of this server (ClusterScope.StateKeeper);
    # numbering goes on after its newest event.
    {_, table} =
      ClusterScope.StateKeeper.claim(__MODULE__, [
        :ordered_set,
        :public,
        :named_table,
        write_concurrency: true
      ])

    counter = :atomics.new(1, signed: false)

    case :ets.last(table) do
      last when is_integer(last) -> :atomics.put(counter, 1, last)
      _ -> :ok
    end

    config = %{
      table: table,
      counter: counter,
      max_events: Keyword.get(opts, :max_events, @max_events),
      max_message_bytes: @max_message_bytes
    }

    # A handler left by an earlier life of this server points at a dead table.
    _ = :logger.remove_handler(@handler_id)

    case :logger.add_handler(@handler_id, ClusterScope.Logs.Handler, %{
           level: Keyword.get(opts, :level, :info),
           config: config
         }) do
      :ok -> {:ok, config}
      {:error, reason} -> {:stop, {:logger_handler, reason}}
    end
  end

  @impl true
  def handle_info(msg, state) do
    ClusterScope.StateKeeper.handle_heir(msg, state.table)
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, _state) do
    _ = :logger.remove_handler(@handler_id)
    :ok
  end

  @doc false
  def max_message_bytes, do: @max_message_bytes
end
