defmodule ClusterScope.Web.Stream do
  @moduledoc """
  `GET /api/v1/stream?topics=cluster,alerts,trace:<session id>`: live events
  as Server-Sent Events, written by httpd's request handler process as a
  chunked response.

  ## Frames

      id: <cursor>
      event: cluster | alert | trace | heartbeat
      data: <JSON>

  `data` is the item the polling operation returns: a `cluster_events`
  event, an alert of `cluster_alerts` (a cleared one carries
  `cleared_at_ms`), an event of `get_trace_events` (with `session`, its id).
  A heartbeat (`{"at_ms": ...}`, every `stream_heartbeat_ms`) keeps
  proxies and the client's watchdog content. The first frame is a
  `retry: 1000` line and a `: connected` comment.

  `id` is an opaque cursor (base64url of the per-topic positions). A client
  that reconnects sends the last one it saw in `Last-Event-ID` (or
  `?last_event_id=`): the stream first replays what came after it, then
  goes live. Without one it starts from now (trace topics: from the
  session's first event).

  ## Authority and bounds

    * `cluster` and `alerts` need the read scope, `trace:<id>` the
      sensitive one (the admin token, `Authorization: Bearer` only), as
      `cluster_events`, `cluster_alerts` and `get_trace_events` do;
    * each stream holds a place of the `:stream` lane of
      `ClusterScope.Web.Admission` (`stream_per_client` per client, JSON
      429 past it);
    * the server ends a stream after `max_stream_s` (the client reconnects
      with its cursor);
    * the socket has a send timeout of #{5} s: a client that stops reading
      is dropped, its handler never blocks longer than that;
    * the mailbox of the handler holds at most one wake-up of
      `ClusterScope.Web.StreamHub` at a time, whatever the event rate;
    * at most #{8} topics, #{200} events per read.

  ## Why httpd can do it

  A module of httpd's `modules` list runs in the connection's request
  handler process and may write the response itself: `mod_esi`'s
  `deliver/2` is this very mechanism (`httpd_response:send_header/3`, then
  `send_chunk/3` per piece, `send_final_chunk/2`, and `{:already_sent, ...}`
  as the result). The handler does the same without `mod_esi`'s extra
  process and its module-name-in-the-URL scheme, after its own Host,
  Origin, token and admission checks.
  """

  require Record

  alias ClusterScope.{Error, JSON}
  alias ClusterScope.Web.{Admission, Authority, StreamHub}

  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  @max_topics 8
  @read_limit 200
  @send_timeout_ms 5_000
  @trace_poll_ms 250
  @max_cursor_bytes 16_384

  @doc "The path of the stream."
  @spec path() :: String.t()
  def path, do: "/api/v1/stream"

  @typedoc """
  How a stream reaches its client: `open` sends the head (status 200 and
  the SSE headers), `write` one piece of the body (`:ok` or `:closed`),
  `finish` ends the body; `socket`, when known, is watched for the
  client's close while the stream is idle.
  """
  @type transport :: %{
          open: ([{String.t(), String.t()}] -> :ok | :closed),
          write: (binary() -> :ok | :closed),
          finish: (() -> term()),
          socket: :inet.socket() | nil
        }

  @doc """
  Serves a stream request on httpd's connection (`mod_data`) for the parsed
  request `req` (see `ClusterScope.Web.Handler`). Returns `{:sent, bytes}`
  once the stream has ended, or `{:error, error}` before anything was
  written (the handler answers it as JSON).
  """
  @spec serve(tuple(), map()) :: {:sent, non_neg_integer()} | {:error, Error.t()}
  def serve(mod_data, req) when is_tuple(mod_data), do: serve_with(httpd(mod_data), req)

  @doc """
  Serves a stream request through any `t:transport/0` (httpd's connection,
  a Plug conn): checks, authority, admission, then the stream.
  """
  @spec serve_with(transport(), map()) :: {:sent, non_neg_integer()} | {:error, Error.t()}
  def serve_with(transport, req) do
    with {:ok, params} <- query(req.query),
         {:ok, topics} <- topics(params),
         :ok <- authorize(topics, req),
         {:ok, cursor} <- cursor(req, params),
         {:ok, cursor} <- check_traces(topics, cursor),
         :ok <- admit(req) do
      try do
        run(transport, req, topics, cursor)
      after
        Admission.leave()
        StreamHub.unsubscribe()
      end
    end
  end

  # httpd's connection: the head and chunks written as mod_esi's deliver/2
  # does.
  defp httpd(mod_data) do
    socket = mod(mod_data, :socket)

    %{
      socket: socket,
      open: fn headers ->
        # A reader that stops reading: the write fails after the timeout
        # and the stream ends; the connection is closed.
        _ = :inet.setopts(socket, send_timeout: @send_timeout_ms, send_timeout_close: true)

        head =
          for {k, v} <- [{"transfer-encoding", "chunked"} | headers],
              do: {String.to_charlist(k), String.to_charlist(v)}

        result = :httpd_response.send_header(mod_data, 200, head)
        # Told when the client goes away while the stream is idle.
        _ = :inet.setopts(socket, active: :once)
        if result == :ok, do: :ok, else: :closed
      end,
      write: fn binary ->
        if :httpd_response.send_chunk(mod_data, binary, false) == :ok, do: :ok, else: :closed
      end,
      finish: fn -> :httpd_response.send_final_chunk(mod_data, false) end
    }
  end

  # -- request ----------------------------------------------------------------------------

  defp query(""), do: {:ok, %{}}

  defp query(text) do
    params = URI.decode_query(text)

    if Enum.all?(params, fn {k, v} -> String.valid?(k) and String.valid?(v) end),
      do: {:ok, params},
      else: {:error, invalid("query", "is not UTF-8 once decoded")}
  rescue
    _ -> {:error, invalid("query", "is not a valid query string")}
  end

  @doc """
  Parses the `topics` parameter: `{:ok, [:cluster | :alerts | {:trace, id}]}`
  or an error naming the field. Without it: cluster and alerts.
  """
  @spec topics(map()) :: {:ok, list()} | {:error, Error.t()}
  def topics(params) do
    names =
      params
      |> Map.get("topics", "cluster,alerts")
      |> String.split(",", trim: true)
      |> Enum.map(&String.trim/1)
      |> Enum.uniq()

    cond do
      names == [] ->
        {:error, invalid("topics", "must name at least one topic")}

      length(names) > @max_topics ->
        {:error, invalid("topics", "may name at most #{@max_topics} topics")}

      true ->
        Enum.reduce_while(names, {:ok, []}, fn name, {:ok, acc} ->
          case topic(name) do
            {:ok, topic} -> {:cont, {:ok, acc ++ [topic]}}
            {:error, _} = error -> {:halt, error}
          end
        end)
    end
  end

  defp topic("cluster"), do: {:ok, :cluster}
  defp topic("alerts"), do: {:ok, :alerts}

  defp topic("trace:" <> id) when byte_size(id) in 1..128 do
    if String.match?(id, ~r/^[A-Za-z0-9_\-]+$/),
      do: {:ok, {:trace, id}},
      else:
        {:error, invalid("topics", "trace:<id> takes a session id (letters, digits, _ and -)")}
  end

  defp topic(other) do
    {:error,
     invalid(
       "topics",
       "has an unknown topic #{inspect(String.slice(other, 0, 60))} (known: cluster, alerts, trace:<session id>)"
     )}
  end

  # Trace topics need what trace events need: the sensitive scope.
  defp authorize(topics, req) do
    scope = if Enum.any?(topics, &match?({:trace, _}, &1)), do: :sensitive, else: :read
    Authority.authorize(scope, req)
  end

  defp admit(req) do
    limits = Map.take(req.settings, [:client_concurrency, :client_rate, :client_burst])

    limits = Map.put(limits, :stream_per_client, Map.get(req.settings, :stream_per_client, 4))

    with :ok <- Admission.enter(req.settings.id, :general, req.client, limits) do
      # The opening costs a request of the client's rate; the stream then
      # holds a place of its own lane.
      Admission.leave()

      case Admission.enter(req.settings.id, :stream, req.client, limits) do
        :ok ->
          :ok

        {:reject, why, retry} ->
          {:error,
           Error.new(:too_many_requests, "refused: #{why}",
             details: %{lane: :stream, retry_after_s: retry}
           )}
      end
    else
      {:reject, why, retry} ->
        {:error,
         Error.new(:too_many_requests, "refused: #{why}",
           details: %{lane: :general, retry_after_s: retry}
         )}
    end
  end

  # -- cursor -----------------------------------------------------------------------------

  defp cursor(req, params) do
    text = Map.get(req.headers, "last-event-id") || Map.get(params, "last_event_id")

    case text do
      nil -> {:ok, %{}}
      "" -> {:ok, %{}}
      text -> decode_cursor(text)
    end
  end

  @doc """
  Encodes the per-topic positions into the opaque `id` of a frame:
  `%{cluster: last_id, alerts: {epoch, seq}, traces: %{id => cursor}}`.
  """
  @spec encode_cursor(map()) :: String.t()
  def encode_cursor(positions) do
    object =
      %{}
      |> put_if("c", positions[:cluster])
      |> put_if("a", with({epoch, seq} <- positions[:alerts], do: [epoch, seq]))
      |> put_if("t", positions[:traces])

    # Plain JSON of strings and integers: encode by hand (no NIF needed).
    Base.url_encode64(hand_json(object), padding: false)
  end

  @doc "Decodes a cursor of `encode_cursor/1`: `{:ok, positions}` or an error naming the field."
  @spec decode_cursor(String.t()) :: {:ok, map()} | {:error, Error.t()}
  def decode_cursor(text) when byte_size(text) > @max_cursor_bytes,
    do: {:error, invalid("last_event_id", "is longer than #{@max_cursor_bytes} bytes")}

  def decode_cursor(text) do
    with {:ok, json} <- Base.url_decode64(String.trim(text), padding: false),
         {:ok, %{} = object} <- JSON.decode(json, max_bytes: @max_cursor_bytes),
         {:ok, positions} <- positions(object) do
      {:ok, positions}
    else
      {:error, %Error{}} = error -> error
      _ -> {:error, invalid("last_event_id", "is not a cursor of this stream")}
    end
  end

  defp positions(object) do
    Enum.reduce_while(object, {:ok, %{}}, fn
      {"c", id}, {:ok, acc} when is_integer(id) and id >= 0 ->
        {:cont, {:ok, Map.put(acc, :cluster, id)}}

      {"a", [epoch, seq]}, {:ok, acc} when is_binary(epoch) and is_integer(seq) and seq >= 0 ->
        {:cont, {:ok, Map.put(acc, :alerts, {epoch, seq})}}

      {"t", %{} = traces}, {:ok, acc} ->
        if map_size(traces) <= @max_topics and
             Enum.all?(traces, fn {k, v} -> is_binary(k) and is_binary(v) end),
           do: {:cont, {:ok, Map.put(acc, :traces, traces)}},
           else: {:halt, :error}

      _, _ ->
        {:halt, :error}
    end)
  end

  defp put_if(map, _key, nil), do: map
  defp put_if(map, key, value), do: Map.put(map, key, value)

  defp hand_json(map) when is_map(map) do
    "{" <>
      Enum.map_join(Enum.sort(map), ",", fn {k, v} -> hand_json(k) <> ":" <> hand_json(v) end) <>
      "}"
  end

  defp hand_json(list) when is_list(list),
    do: "[" <> Enum.map_join(list, ",", &hand_json/1) <> "]"

  defp hand_json(n) when is_integer(n), do: Integer.to_string(n)

  defp hand_json(text) when is_binary(text) do
    escaped =
      for <<c::utf8 <- text>>, into: "" do
        cond do
          c == ?" -> "\\\""
          c == ?\\ -> "\\\\"
          c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          true -> <<c::utf8>>
        end
      end

    "\"" <> escaped <> "\""
  end

  # A trace topic must name a session this node knows; its position starts
  # at the session's beginning unless the cursor has one.
  defp check_traces(topics, cursor) do
    traces = Map.get(cursor, :traces, %{})

    Enum.reduce_while(topics, {:ok, cursor}, fn
      {:trace, id}, {:ok, cursor} ->
        case ClusterScope.Trace.events(id, Map.get(traces, id), 1) do
          {:ok, _} ->
            {:cont, {:ok, cursor}}

          {:error, reason} ->
            {:halt, {:error, Error.normalize(reason)}}
        end

      _, acc ->
        {:cont, acc}
    end)
  end

  # -- the stream -------------------------------------------------------------------------

  defp run(transport, req, topics, cursor) do
    hub_topics = Enum.filter(topics, &(&1 in [:cluster, :alerts]))
    :ok = StreamHub.subscribe(hub_topics)

    # Positions "from now" are taken after subscribing: nothing falls
    # between them and the first wake-up.
    positions = start_positions(topics, cursor)

    head = [
      {"content-type", "text/event-stream"},
      {"cache-control", "no-cache"},
      {"x-content-type-options", "nosniff"},
      {"x-accel-buffering", "no"}
    ]

    now = now_ms()

    state = %{
      transport: transport,
      socket: transport.socket,
      topics: topics,
      positions: positions,
      bytes: 0,
      heartbeat_ms: Map.get(req.settings, :stream_heartbeat_ms, 15_000),
      deadline: now + Map.get(req.settings, :max_stream_s, 300) * 1_000,
      next_heartbeat: now + Map.get(req.settings, :stream_heartbeat_ms, 15_000),
      next_trace: now + @trace_poll_ms
    }

    with :ok <- transport.open.(head),
         {:ok, state} <- write(state, "retry: 1000\n: connected\n\n") do
      # Replay what the cursor has not seen, then go live.
      state = loop(pull(state, topics))
      _ = transport.finish.()
      {:sent, state.bytes}
    else
      :closed -> {:sent, 0}
      {:closed, state} -> {:sent, state.bytes}
    end
  catch
    {:stream_closed, bytes} -> {:sent, bytes}
  end

  defp start_positions(topics, cursor) do
    # Positions of trace topics no longer followed are dropped: the cursor
    # stays within its bound of topics, and a session followed again later
    # is replayed from its first event.
    followed = for {:trace, id} <- topics, do: id
    traces = Map.take(Map.get(cursor, :traces, %{}), followed)

    Enum.reduce(topics, %{traces: traces}, fn
      :cluster, acc ->
        last = last_cluster_id()

        # A cursor past the end of the history comes from before this
        # node restarted (ids start again at 1): replay what there is.
        position =
          case Map.fetch(cursor, :cluster) do
            {:ok, id} when id > last -> 0
            {:ok, id} -> id
            :error -> last
          end

        Map.put(acc, :cluster, position)

      :alerts, acc ->
        Map.put(acc, :alerts, Map.get_lazy(cursor, :alerts, &StreamHub.alerts_position/0))

      {:trace, _}, acc ->
        acc
    end)
  end

  defp last_cluster_id do
    case ClusterScope.Cluster.State.events(0, ClusterScope.Cluster.Events.max_events()) do
      [] -> 0
      events -> List.last(events).id
    end
  end

  defp loop(state) do
    now = now_ms()
    traces? = Enum.any?(state.topics, &match?({:trace, _}, &1))

    cond do
      now >= state.deadline ->
        state

      now >= state.next_heartbeat ->
        data = hand_json(%{"at_ms" => System.system_time(:millisecond)})

        state
        |> frame("heartbeat", data)
        |> Map.put(:next_heartbeat, now + state.heartbeat_ms)
        |> loop()

      traces? and now >= state.next_trace ->
        traces = for {:trace, _} = t <- state.topics, do: t

        state
        |> pull(traces)
        |> Map.put(:next_trace, now_ms() + @trace_poll_ms)
        |> loop()

      true ->
        wait =
          [state.deadline, state.next_heartbeat | if(traces?, do: [state.next_trace], else: [])]
          |> Enum.min()
          |> Kernel.-(now)
          |> max(0)

        socket = state.socket

        receive do
          {:cluster_scope_stream, :wake} ->
            flush_wakes()
            StreamHub.ready()
            state |> pull(Enum.filter(state.topics, &(&1 in [:cluster, :alerts]))) |> loop()

          {:tcp_closed, ^socket} ->
            throw({:stream_closed, state.bytes})

          {:tcp_error, ^socket, _} ->
            throw({:stream_closed, state.bytes})

          {:tcp, ^socket, _data} ->
            # A client sends nothing on a stream; whatever it is, ignore it.
            _ = :inet.setopts(socket, active: :once)
            loop(state)
        after
          wait -> loop(state)
        end
    end
  end

  defp flush_wakes do
    receive do
      {:cluster_scope_stream, :wake} -> flush_wakes()
    after
      0 -> :ok
    end
  end

  defp pull(state, topics), do: Enum.reduce(topics, state, &pull_topic(&2, &1))

  defp pull_topic(state, :cluster) do
    events = ClusterScope.Cluster.State.events(state.positions.cluster, @read_limit)

    state =
      Enum.reduce(events, state, fn event, state ->
        state = put_in(state.positions[:cluster], event.id)
        frame(state, "cluster", encode(event))
      end)

    if length(events) == @read_limit, do: pull_topic(state, :cluster), else: state
  end

  defp pull_topic(state, :alerts) do
    {entries, position} = StreamHub.alerts_since(state.positions.alerts, @read_limit)

    state =
      Enum.reduce(entries, state, fn {seq, alert}, state ->
        {epoch, _} = position
        state = put_in(state.positions[:alerts], {epoch, seq})
        frame(state, "alert", encode(alert))
      end)

    state = put_in(state.positions[:alerts], position)
    if length(entries) == @read_limit, do: pull_topic(state, :alerts), else: state
  end

  defp pull_topic(state, {:trace, id}) do
    case ClusterScope.Trace.events(id, Map.get(state.positions.traces, id), @read_limit) do
      {:ok, %{events: events, next_cursor: next}} ->
        state =
          case events do
            [] ->
              put_in(state.positions.traces[id], next)

            _ ->
              data = Enum.map(events, &encode(Map.put(&1, :session, id)))
              # The events of one read share the cursor after the last one:
              # every frame but the last carries the one before the read.
              last = length(data) - 1

              data
              |> Enum.with_index()
              |> Enum.reduce(state, fn {json, i}, state ->
                state = if i == last, do: put_in(state.positions.traces[id], next), else: state

                frame(state, "trace", json)
              end)
          end

        if length(events) == @read_limit, do: pull_topic(state, {:trace, id}), else: state

      {:error, _} ->
        # The session went away (its events are kept 10 minutes after it
        # stops): nothing more will come; stop reading it.
        %{state | topics: List.delete(state.topics, {:trace, id})}
    end
  end

  defp encode(item) do
    case JSON.encode(ClusterScope.Secrets.redact(item)) do
      {:ok, json} -> json
      {:error, reason} -> hand_json(%{"error" => "could not encode: " <> inspect(reason)})
    end
  end

  defp frame(state, event, data) do
    text = ["id: ", encode_cursor(state.positions), "\nevent: ", event, "\ndata: ", data, "\n\n"]

    case write(state, text) do
      {:ok, state} -> state
      {:closed, state} -> throw({:stream_closed, state.bytes})
    end
  end

  defp write(state, iodata) do
    binary = IO.iodata_to_binary(iodata)

    case state.transport.write.(binary) do
      :ok -> {:ok, %{state | bytes: state.bytes + byte_size(binary)}}
      _ -> {:closed, state}
    end
  end

  defp invalid(field, message) do
    Error.new(:invalid_params, "#{field} #{message}",
      details: %{fields: [%{field: field, message: message}]}
    )
  end

  defp now_ms, do: System.monotonic_time(:millisecond)
end
