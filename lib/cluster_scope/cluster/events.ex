defmodule ClusterScope.Cluster.Events do
  @moduledoc """
  The bounded history of cluster events (the last #{1_000}) and their
  delivery: each event goes to every subscriber as
  `{:cluster_scope, :cluster, event}` and to `ClusterScope.Telemetry`.
  Held by `ClusterScope.Cluster.State`. Appending is O(1) (a queue).
  """

  @max_events 1_000

  @typedoc "The history: a queue of at most #{1_000} events and the next id."
  @type t :: %{queue: :queue.queue(), count: non_neg_integer(), next_id: pos_integer()}

  @doc "An empty history; ids start at 1."
  @spec new() :: t()
  def new, do: %{queue: :queue.new(), count: 0, next_id: 1}

  @doc "How many events the history keeps."
  @spec max_events() :: pos_integer()
  def max_events, do: @max_events

  @doc """
  Appends an event (dropping the oldest past #{1_000}) and sends it to
  `subscribers`. Returns the history.
  """
  @spec emit(t(), [pid()], atom(), node() | nil, String.t(), map()) :: t()
  def emit(log, subscribers, type, node, cause, details) do
    event = %{
      id: log.next_id,
      type: type,
      node: node,
      at_ms: System.system_time(:millisecond),
      cause: cause,
      details: details
    }

    for pid <- subscribers, do: send(pid, {:cluster_scope, :cluster, event})
    ClusterScope.Telemetry.cluster_event(event)

    {queue, count} =
      if log.count >= @max_events do
        {{:value, _}, q} = :queue.out(log.queue)
        {:queue.in(event, q), log.count}
      else
        {:queue.in(event, log.queue), log.count + 1}
      end

    %{log | queue: queue, count: count, next_id: log.next_id + 1}
  end

  @doc """
  A history rebuilt from kept events (any order) and the next id: what a
  restarted `ClusterScope.Cluster.State` had before its crash.
  """
  @spec restore([map()], pos_integer()) :: t()
  def restore(events, next_id) do
    kept = events |> Enum.sort_by(& &1.id) |> Enum.take(-@max_events)
    %{queue: :queue.from_list(kept), count: length(kept), next_id: next_id}
  end

  @doc "The newest event, or nil."
  @spec last(t()) :: map() | nil
  def last(log) do
    case :queue.peek_r(log.queue) do
      {:value, event} -> event
      :empty -> nil
    end
  end

  @doc "Events with an id greater than `since` (oldest first), at most `limit`. O(history)."
  @spec since(t(), non_neg_integer(), pos_integer()) :: [map()]
  def since(log, since, limit) do
    log.queue
    |> :queue.to_list()
    |> Enum.filter(&(&1.id > since))
    |> Enum.take(limit)
  end
end
