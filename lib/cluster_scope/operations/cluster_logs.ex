defmodule ClusterScope.Operations.ClusterLogs do
  @moduledoc """
  `GET /api/v1/cluster/logs`: recent log events of every node (or of
  `nodes`), merged by time, filtered by level, module and text; with
  `cursor` (the `next_cursor` of the previous answer), only what came after
  it, so a client can follow the cluster's logs.

  Each node answers from its own ring of its last #{1_000} events at `:info`
  or above (`ClusterScope.Logs`), scanning at most that ring and stopping at
  `limit`: microseconds to a millisecond per node, in parallel. A node that
  does not answer within the node timeout, or that this node sees as not up,
  is listed in `node_errors`.

  Scope `:sensitive`: log lines hold whatever the application printed. The
  answer is redacted like every other (cookies, tokens, `redact_keys`).
  """

  use ClusterScope.Operation, name: "cluster_logs", scope: :sensitive

  alias ClusterScope.Logs

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/logs",
      summary: "Recent log events of every node, merged by time, filtered, followable",
      parameters: [
        %{
          name: :nodes,
          type: :array,
          items: :node,
          max_length: 256,
          location: :query,
          description: "only these nodes (default: every node running ClusterScope)"
        },
        %{
          name: :level,
          type: :enum,
          values: Logs.levels(),
          location: :query,
          description: "this level or more severe"
        },
        %{
          name: :modules,
          type: :array,
          items: :string,
          max_length: 32,
          location: :query,
          description: "only events of these modules (MyApp.Cart; MyApp. for a namespace)"
        },
        %{
          name: :contains,
          type: :string,
          max_length: 200,
          location: :query,
          description: "only events whose message contains this text (any case)"
        },
        %{
          name: :cursor,
          type: :string,
          max_length: 65_536,
          location: :query,
          description: "next_cursor of the previous answer: only later events"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1_000,
          default: 100,
          location: :query,
          description: "at most this many events"
        }
      ],
      responses: %{200 => %{description: "events oldest first, with next_cursor"}}
    }
  end

  @doc false
  def check_params(params) do
    case Map.get(params, :cursor) do
      nil ->
        {:ok, params}

      text ->
        case decode_cursor(text) do
          {:ok, cursor} ->
            {:ok, Map.put(params, :cursor, cursor)}

          :error ->
            {:error, [%{field: "cursor", message: "is not a next_cursor of cluster_logs"}]}
        end
    end
  end

  @impl true
  def execute(params) do
    cursor = Map.get(params, :cursor)
    limit = params.limit

    opts =
      [
        level: Map.get(params, :level),
        modules: Map.get(params, :modules, []),
        contains: Map.get(params, :contains),
        limit: limit
      ] ++ if(cursor, do: [marks: cursor], else: [])

    {answers, node_errors} =
      ClusterScope.Health.agent_call(Logs, :recent, [opts], Map.get(params, :nodes))

    merged =
      answers
      |> Enum.flat_map(fn {_node, %{entries: entries}} -> entries end)
      |> Enum.sort_by(&{&1.time_us, Atom.to_string(&1.node), &1.seq})

    # Without a cursor: the newest `limit`; with one: the oldest `limit` after it.
    events = if cursor, do: Enum.take(merged, limit), else: Enum.take(merged, -limit)

    {:ok,
     %{
       events: Enum.map(events, &with_time/1),
       count: length(events),
       next_cursor: encode_cursor(next_marks(answers, events, cursor || %{})),
       node_errors: node_errors
     }}
  end

  defp with_time(%{time_us: us} = event) do
    Map.put(event, :time, us |> DateTime.from_unix!(:microsecond) |> DateTime.to_iso8601())
  end

  # Each node's mark moves to the last of its events shown; a node with
  # nothing matching moves to the newest event it had, so a follower never
  # sees an event twice or misses one that matches.
  defp next_marks(answers, shown, previous) do
    shown_max =
      Enum.reduce(shown, %{}, fn e, acc ->
        Map.update(acc, Atom.to_string(e.node), e.seq, &max(&1, e.seq))
      end)

    Enum.reduce(answers, previous, fn {n, %{entries: entries, last_seq: last}}, acc ->
      key = Atom.to_string(n)

      cond do
        Map.has_key?(shown_max, key) -> Map.put(acc, key, shown_max[key])
        entries == [] -> Map.put(acc, key, max(last, Map.get(acc, key, 0)))
        Map.has_key?(acc, key) -> acc
        # Only older events of this node matched and the limit left them
        # out: a follower starts after the newest.
        true -> Map.put(acc, key, last)
      end
    end)
  end

  defp encode_cursor(marks) do
    marks
    |> Enum.map_join(",", fn {node, seq} -> "#{node}=#{seq}" end)
    |> Base.url_encode64(padding: false)
  end

  @doc false
  # node name (text, never made an atom here) => seq
  def decode_cursor(text) do
    with {:ok, raw} <- Base.url_decode64(text, padding: false),
         true <- String.valid?(raw) do
      raw
      |> String.split(",", trim: true)
      |> Enum.reduce_while({:ok, %{}}, fn pair, {:ok, acc} ->
        with [node, seq] <- String.split(pair, "=", parts: 2),
             {seq, ""} when seq >= 0 <- Integer.parse(seq) do
          {:cont, {:ok, Map.put(acc, node, seq)}}
        else
          _ -> {:halt, :error}
        end
      end)
    else
      _ -> :error
    end
  end
end
