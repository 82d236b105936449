defmodule ClusterScope.Trace do
  @moduledoc """
  Tracing across the cluster, throttled in Rust so it can never take a node
  down.

  A session traces a process (anywhere in the cluster), a function pattern
  (on the nodes you name, or all of them), or the messages a process sends
  and receives. On every traced node a `ClusterScope.Trace.Tracer` receives
  the VM's trace messages and asks the Rust throttle (token budget per
  window, per-process budget, bounded ring, overhead accounting) whether to
  keep each one; when the budget of a window is spent it switches the VM's
  tracing off until the next window, so the node stops producing events
  instead of producing and dropping them. See `ClusterScope.Trace.Spec`
  for what is refused (hot modules with wildcards, ClusterScope itself) and
  for the limits, and `ClusterScope.Trace.Tracer` for why each part is
  bounded.

      {:ok, session} = ClusterScope.Trace.start(%{module: "MyApp.Cart", function: "add", return: true})
      {:ok, %{events: events, next_cursor: cursor}} = ClusterScope.Trace.events(session.id)
      ClusterScope.Trace.subscribe(session.id)   # {:cluster_scope, :trace, id, event}
      ClusterScope.Trace.stop(session.id)

  A session started here stops when its owner dies (the caller of
  `start/2`; sessions created over HTTP or the CLI are owned by
  ClusterScope and end at their duration), when its duration or event
  count is reached, or, on one node, when that node goes away. Events of
  every node come back merged by time, each with its node, and pids in
  the one text form `"0.123.0@node"`, whichever node they live on.
  """

  alias ClusterScope.{Fanout, ProcessRef}

  @stats_deadline_ms 2_000
  alias ClusterScope.Trace.{Sessions, Spec, Tracer}

  @doc """
  Starts a session from params as `TraceProcess` takes them (atom keys).
  Options: `:owner` (default: the caller; `nil` for a session owned by
  ClusterScope). Returns the session as `list/0` shows it.
  """
  @spec start(map(), keyword()) :: {:ok, map()} | {:error, term()}
  def start(params, opts \\ []) do
    owner = Keyword.get(opts, :owner, self())
    known = [node() | Node.list()]

    with {:ok, params} <- resolve_horde(params),
         {:ok, spec} <- build(params, known),
         {:ok, session} <- create(spec, owner) do
      {:ok, present(session)}
    end
  end

  defp build(params, known) do
    case Spec.build(params, known) do
      {:ok, spec} -> {:ok, spec}
      {:error, fields} -> {:error, {:invalid_params, "invalid trace spec", %{errors: fields}}}
    end
  end

  # Tracers are started from here, in parallel, then the session is
  # recorded: the registry never waits for another node.
  defp create(spec, owner) do
    case Process.whereis(Sessions) do
      nil ->
        {:error, {:unavailable, "ClusterScope's trace registry is not running on #{node()}"}}

      registry ->
        id = "t" <> Base.url_encode64(:crypto.strong_rand_bytes(9), padding: false)
        # Tracers watch ClusterScope's top supervisor, which lives as long as
        # ClusterScope on this node: a crash of the session registry does not
        # end the sessions (it gets them back from ClusterScope.StateKeeper);
        # the creating node's death, a cut, or ClusterScope stopping does.
        anchor = Process.whereis(ClusterScope.Supervisor) || registry
        results = start_tracers(spec.nodes, [id, spec, owner || anchor, anchor])
        tracers = for {node, {:ok, pid}} <- results, into: %{}, do: {node, pid}
        failed = for {node, {:error, reason}} <- results, into: %{}, do: {node, reason}

        if tracers == %{} do
          {code, message} = creation_error(failed)

          {:error,
           {code, message, %{nodes: Map.new(failed, fn {n, r} -> {n, reason_text(r)} end)}}}
        else
          session = %{
            id: id,
            spec: spec,
            owner: owner || anchor,
            tracers: tracers,
            failed: failed,
            created_at_ms: System.system_time(:millisecond)
          }

          :ok = Sessions.register(session)
          {:ok, Map.merge(%{ended: %{}, subscribers: []}, session)}
        end
    end
  end

  # Every traced node at once, each through Fanout (the one place that
  # calls other nodes), each bounded by 10 s.
  defp start_tracers(nodes, args) do
    nodes
    |> Enum.map(fn node ->
      {node, Task.async(fn -> Fanout.call(node, Tracer, :start, args, 10_000) end)}
    end)
    |> Enum.map(fn {node, task} ->
      case Task.await(task, :infinity) do
        {:ok, {:ok, pid}} when is_pid(pid) -> {node, {:ok, pid}}
        {:ok, {:error, reason}} -> {node, {:error, reason}}
        {:ok, other} -> {node, {:error, {:unexpected, other}}}
        {:error, node_error} -> {node, {:error, node_reason(node_error)}}
      end
    end)
  end

  defp node_reason(%{status: status, reason: text}) when status in [:down, :timeout],
    do: {:node_unavailable, text}

  defp node_reason(%{status: :not_running}), do: :not_running
  defp node_reason(%{reason: text}), do: {:failed, text}

  defp creation_error(failed) do
    reasons = Map.values(failed)

    cond do
      Enum.any?(reasons, &match?({:conflict, _}, &1)) ->
        {:unavailable, "a conflicting tracer is already tracing: " <> texts(failed)}

      Enum.all?(reasons, &match?({:not_found, _}, &1)) ->
        {:not_found, "nothing to trace: " <> texts(failed)}

      Enum.all?(reasons, &match?({:node_unavailable, _}, &1)) ->
        {:node_unavailable, "no traced node could be reached: " <> texts(failed)}

      Enum.any?(reasons, &(&1 in [:max_children, :not_running])) ->
        {:unavailable,
         "no tracer could start (at most 64 per node, kept 10 minutes after they stop; " <>
           "or ClusterScope is not running there): " <> texts(failed)}

      true ->
        {:invalid_params, "no tracer could start: " <> texts(failed)}
    end
  end

  defp texts(failed),
    do: failed |> Enum.map(fn {n, r} -> "#{n}: #{reason_text(r)}" end) |> Enum.join("; ")

  defp reason_text({_tag, text}) when is_binary(text), do: text
  defp reason_text(other), do: inspect(other, limit: 10)

  # A Horde name is looked up here and traced as the process it names now.
  defp resolve_horde(%{horde_name: name, horde_registry: registry} = params)
       when is_binary(name) and is_binary(registry) do
    with true <-
           Code.ensure_loaded?(Horde.Registry) || {:error, {:unavailable, "Horde is not loaded"}},
         {:ok, reg} <- existing_atom(registry),
         [{pid, _} | _] <- ClusterScope.Horde.Inspect.lookup(reg, name) do
      {:ok,
       params
       |> Map.drop([:horde_name, :horde_registry])
       |> Map.put(:process, ProcessRef.from_pid(pid))}
    else
      [] -> {:error, {:not_found, "no process named #{inspect(name)} in #{registry}"}}
      {:error, text} when is_binary(text) -> {:error, {:unavailable, text}}
      {:error, _} = error -> error
    end
  end

  defp resolve_horde(params), do: {:ok, params}

  defp existing_atom(text) do
    {:ok, String.to_existing_atom(text)}
  rescue
    ArgumentError -> {:error, {:not_found, "no Horde registry #{inspect(text)}"}}
  end

  @doc "The `:id` path parameter of the operations on one session."
  @spec id_param() :: map()
  def id_param do
    %{
      name: :id,
      type: :string,
      required: true,
      max_length: 64,
      location: :path,
      description: "the session id"
    }
  end

  @doc """
  The sessions created from this node, newest first, with each node's
  counters: `{sessions, total}` for the page `offset`, `limit`.
  """
  @spec list(non_neg_integer(), pos_integer()) :: {[map()], non_neg_integer()}
  def list(offset \\ 0, limit \\ 100) do
    all = registry(fn -> Sessions.list() end, [])

    # Each session asks its tracers for their counters (2 s deadline per
    # node): the sessions of a page are presented at once, so a page with a
    # slow node costs one deadline, not one per session.
    page =
      all
      |> Enum.drop(offset)
      |> Enum.take(limit)
      # present/1 is bounded by its own deadline (yield_many).
      |> Task.async_stream(&present/1, max_concurrency: 16, ordered: true, timeout: :infinity)
      |> Enum.map(fn {:ok, presented} -> presented end)

    {page, length(all)}
  end

  @doc "One session with each node's counters."
  @spec get(String.t()) :: {:ok, map()} | {:error, term()}
  def get(id) do
    with {:ok, session} <- fetch(id), do: {:ok, present(session)}
  end

  @doc "Stops a session on every node; its events stay readable for 10 minutes."
  @spec stop(String.t()) :: {:ok, map()} | {:error, term()}
  def stop(id) do
    with {:ok, session} <- fetch(id) do
      session.tracers
      |> Enum.map(fn {node, pid} ->
        Task.async(fn ->
          Fanout.call(node, Tracer, :stop_tracing, [pid], @stats_deadline_ms)
        end)
      end)
      |> Task.yield_many(@stats_deadline_ms + 500)
      |> Enum.each(fn {task, result} -> result || Task.shutdown(task, :brutal_kill) end)

      {:ok, present(session)}
    end
  end

  @doc "Sends `{:cluster_scope, :trace, id, event}` to the caller for every kept event."
  @spec subscribe(String.t()) :: :ok | {:error, term()}
  def subscribe(id) do
    case registry(fn -> Sessions.subscribe(id, self()) end, {:error, :unavailable}) do
      :ok -> :ok
      {:error, :not_found} -> not_found(id)
      {:error, :unavailable} -> unavailable()
    end
  end

  @doc """
  The next events of a session, merged by time across its nodes: at most
  `limit` after `cursor` (`nil` for the first page). Returns
  `%{events:, next_cursor:, missed:, node_errors:}`; `missed` counts events
  a node's ring overwrote before they were read.
  """
  @spec events(String.t(), String.t() | nil, pos_integer()) :: {:ok, map()} | {:error, term()}
  def events(id, cursor \\ nil, limit \\ 100) do
    with {:ok, session} <- fetch(id),
         {:ok, positions} <- decode_cursor(cursor, Map.keys(session.tracers)) do
      reads =
        session.tracers
        |> Enum.map(fn {node, pid} ->
          # Read and formatted (and redacted) on the traced node.
          args = [pid, Map.get(positions, node, 0), limit]
          {node, Task.async(fn -> Fanout.call(node, Tracer, :read, args) end)}
        end)
        |> Enum.map(fn {node, task} -> {node, Task.await(task, :infinity)} end)

      {oks, errors} =
        Enum.reduce(reads, {[], []}, fn
          {node, {:ok, {:ok, events, _next, missed}}}, {oks, errs} ->
            {[{node, events, missed} | oks], errs}

          {node, other}, {oks, errs} ->
            {oks, [read_error(node, other, session) | errs]}
        end)

      # Each node's events are in its own (seq) order; the merge takes the
      # earliest head of any node, so what a page takes of a node is always
      # a prefix and its position the last seq taken.
      {merged, positions} =
        oks
        |> Enum.map(fn {node, events, _} -> {node, events} end)
        |> merge_heads(limit, [], positions)

      {:ok,
       %{
         id: id,
         events: merged,
         next_cursor: encode_cursor(positions),
         missed: oks |> Enum.map(&elem(&1, 2)) |> Enum.sum(),
         node_errors: errors
       }}
    end
  end

  defp merge_heads(_lists, 0, acc, positions), do: {Enum.reverse(acc), positions}

  defp merge_heads(lists, left, acc, positions) do
    case lists |> Enum.filter(&match?({_, [_ | _]}, &1)) do
      [] ->
        {Enum.reverse(acc), positions}

      live ->
        {node, [event | rest]} =
          Enum.min_by(live, fn {n, [e | _]} -> {e.ts_us, Atom.to_string(n)} end)

        lists = List.keyreplace(live, node, 0, {node, rest})
        merge_heads(lists, left - 1, [event | acc], Map.put(positions, node, event.seq))
    end
  end

  defp read_error(node, other, session) do
    ended = Map.get(session.ended, node)

    %{
      node: node,
      status: if(ended == :node_down, do: :down, else: :error),
      reason:
        "could not read #{node}'s events: " <>
          if(ended, do: "its part of the session ended (#{ended})", else: error_text(other)),
      remediation: "Events kept on a node that went away are lost with it."
    }
  end

  defp error_text({:error, %{reason: text}}) when is_binary(text), do: text
  defp error_text(other), do: inspect(other, limit: 5)

  defp fetch(id) do
    case registry(fn -> Sessions.get(id) end, {:error, :unavailable}) do
      {:ok, session} -> {:ok, session}
      {:error, :not_found} -> not_found(id)
      {:error, :unavailable} -> unavailable()
    end
  end

  # The registry answers at once (it never calls other nodes); an exit means
  # it is not running.
  defp registry(fun, default) do
    fun.()
  catch
    :exit, _ -> default
  end

  defp unavailable,
    do: {:error, {:unavailable, "ClusterScope's trace registry is not running on #{node()}"}}

  defp not_found(id), do: {:error, {:not_found, "no trace session #{inspect(id)} on #{node()}"}}

  @doc false
  def encode_cursor(positions) do
    positions
    |> Enum.map(fn {node, seq} -> "#{node}=#{seq}" end)
    |> Enum.sort()
    |> Enum.join(";")
    |> Base.url_encode64(padding: false)
  end

  @doc false
  def decode_cursor(nil, _nodes), do: {:ok, %{}}

  def decode_cursor(text, nodes) do
    with {:ok, raw} <- Base.url_decode64(text, padding: false),
         {:ok, positions} <- parse_positions(raw, nodes) do
      {:ok, positions}
    else
      _ ->
        {:error, {:invalid_params, "cursor is not a cursor of this session", %{field: "cursor"}}}
    end
  end

  defp parse_positions("", _nodes), do: {:ok, %{}}

  defp parse_positions(raw, nodes) do
    raw
    |> String.split(";")
    |> Enum.reduce_while({:ok, %{}}, fn part, {:ok, acc} ->
      with [name, seq] <- String.split(part, "=", parts: 2),
           node when node != nil <- Enum.find(nodes, &(Atom.to_string(&1) == name)),
           {n, ""} when n >= 0 <- Integer.parse(seq) do
        {:cont, {:ok, Map.put(acc, node, n)}}
      else
        _ -> {:halt, :error}
      end
    end)
  end

  # -- presentation ---------------------------------------------------------------

  # Every tracer is asked at once, under one deadline: a node that does not
  # answer in time shows as `unknown`.
  defp present(session) do
    nodes = Map.keys(session.tracers)

    per_node =
      session.tracers
      |> Enum.map(fn {node, pid} ->
        Task.async(fn ->
          case Fanout.call(node, Tracer, :stats, [pid], @stats_deadline_ms) do
            {:ok, stats} ->
              stats

            # The tracer is gone (its node answered: the call exited there).
            {:error, %{status: :error}} ->
              %{status: :gone, ended: Map.get(session.ended, node)}

            {:error, %{status: status}} when status in [:down, :not_running] ->
              %{status: :gone, ended: Map.get(session.ended, node)}

            {:error, %{status: :timeout}} ->
              :timeout
          end
        end)
      end)
      |> Task.yield_many(@stats_deadline_ms + 500)
      |> Enum.zip(nodes)
      |> Map.new(fn
        {{_task, {:ok, stats}}, node} when is_map(stats) ->
          {node, stats}

        {{task, _}, node} ->
          Task.shutdown(task, :brutal_kill)
          {node, %{status: :unknown, reason: "no answer within #{@stats_deadline_ms} ms"}}
      end)

    spec = session.spec

    %{
      id: session.id,
      created_at_ms: session.created_at_ms,
      owner: ProcessRef.to_string(session.owner),
      target: target_text(spec),
      pattern: pattern_text(spec),
      messages: spec[:messages],
      limits:
        Map.take(spec, [
          :duration_ms,
          :max_events,
          :rate,
          :per_process_rate,
          :max_queue,
          :overhead_ceiling
        ]),
      nodes: Map.keys(session.tracers),
      status: status(per_node),
      per_node: per_node,
      ended: session.ended,
      failed: Map.new(session.failed, fn {n, r} -> {n, reason_text(r)} end)
    }
  end

  defp status(per_node) do
    if Enum.any?(per_node, fn {_, s} -> s[:status] in [:running, :paused] end),
      do: :running,
      else: :stopped
  end

  defp target_text(%{process: ref}), do: ProcessRef.to_string(ref)
  defp target_text(%{name: name}), do: inspect(name)
  defp target_text(_), do: nil

  defp pattern_text(%{mfa: {m, f, a}}), do: "#{inspect(m)}.#{f}/#{a}"
  defp pattern_text(_), do: nil
end
