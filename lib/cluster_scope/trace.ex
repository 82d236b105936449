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

  defp create(spec, owner) do
    case Sessions.create(spec, owner) do
      {:ok, session} ->
        {:ok, session}

      {:error, failed} when is_map(failed) ->
        {code, message} = creation_error(failed)
        {:error, {code, message, %{nodes: Map.new(failed, fn {n, r} -> {n, reason_text(r)} end)}}}
    end
  end

  defp creation_error(failed) do
    reasons = Map.values(failed)

    cond do
      Enum.any?(reasons, &match?({:conflict, _}, &1)) ->
        {:unavailable, "a conflicting tracer is already tracing: " <> texts(failed)}

      Enum.all?(reasons, &match?({:not_found, _}, &1)) ->
        {:not_found, "nothing to trace: " <> texts(failed)}

      Enum.all?(reasons, &match?({:node_unavailable, _}, &1)) ->
        {:node_unavailable, "no traced node could be reached: " <> texts(failed)}

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
         [{pid, _} | _] <- apply(Horde.Registry, :lookup, [reg, name]) do
      {:ok,
       params
       |> Map.drop([:horde_name, :horde_registry])
       |> Map.put(:process, ProcessRef.from_pid(pid))}
    else
      [] -> {:error, {:not_found, "no process named #{inspect(name)} in #{registry}"}}
      {:error, _} = error -> error
    end
  end

  defp resolve_horde(params), do: {:ok, params}

  defp existing_atom(text) do
    {:ok, String.to_existing_atom(text)}
  rescue
    ArgumentError -> {:error, {:not_found, "no Horde registry #{inspect(text)}"}}
  end

  @doc "The sessions created from this node, newest first, with each node's counters."
  @spec list() :: [map()]
  def list, do: Enum.map(Sessions.list(), &present/1)

  @doc "One session with each node's counters."
  @spec get(String.t()) :: {:ok, map()} | {:error, term()}
  def get(id) do
    case Sessions.get(id) do
      {:ok, session} -> {:ok, present(session)}
      {:error, :not_found} -> not_found(id)
    end
  end

  @doc "Stops a session on every node; its events stay readable for 10 minutes."
  @spec stop(String.t()) :: {:ok, map()} | {:error, term()}
  def stop(id) do
    case Sessions.stop(id) do
      {:ok, _} -> get(id)
      {:error, :not_found} -> not_found(id)
    end
  end

  @doc "Sends `{:cluster_scope, :trace, id, event}` to the caller for every kept event."
  @spec subscribe(String.t()) :: :ok | {:error, term()}
  def subscribe(id) do
    case Sessions.subscribe(id, self()) do
      :ok -> :ok
      {:error, :not_found} -> not_found(id)
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
          {node,
           Task.async(fn ->
             try do
               Tracer.read(pid, Map.get(positions, node, 0), limit)
             catch
               :exit, reason -> {:error, reason}
             end
           end)}
        end)
        |> Enum.map(fn {node, task} ->
          {node, Task.yield(task, Fanout.default_timeout()) || Task.shutdown(task, :brutal_kill)}
        end)

      {oks, errors} =
        Enum.reduce(reads, {[], []}, fn
          {node, {:ok, {:ok, events, _next, missed}}}, {oks, errs} ->
            {[{node, events, missed} | oks], errs}

          {node, other}, {oks, errs} ->
            {oks, [read_error(node, other, session) | errs]}
        end)

      merged =
        oks
        |> Enum.flat_map(fn {_node, events, _} -> events end)
        |> Enum.sort_by(&{&1.ts_us, &1.node, &1.seq})
        |> Enum.take(limit)

      positions =
        Enum.reduce(merged, positions, fn e, acc ->
          node = Enum.find(Map.keys(session.tracers), &(Atom.to_string(&1) == e.node))
          Map.update(acc, node, e.seq, &max(&1, e.seq))
        end)

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

  defp read_error(node, other, session) do
    ended = Map.get(session.ended, node)

    %{
      node: node,
      status: if(ended == :node_down, do: :down, else: :error),
      reason:
        "could not read #{node}'s events: " <>
          if(ended, do: "its part of the session ended (#{ended})", else: inspect(other, limit: 5)),
      remediation: "Events kept on a node that went away are lost with it."
    }
  end

  defp fetch(id) do
    case Sessions.get(id) do
      {:ok, session} -> {:ok, session}
      {:error, :not_found} -> not_found(id)
    end
  end

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

  defp present(session) do
    per_node =
      session.tracers
      |> Enum.map(fn {node, pid} ->
        {node,
         Task.async(fn ->
           try do
             Tracer.stats(pid)
           catch
             :exit, _ -> %{status: :gone, ended: Map.get(session.ended, node)}
           end
         end)}
      end)
      |> Map.new(fn {node, task} -> {node, Task.await(task, :infinity)} end)

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
