defmodule ClusterScope.Operations.ClusterEvents do
  @moduledoc """
  `GET /api/v1/cluster/events?since=ID`: the cluster events this node
  recorded after event `since` (up, down with its cause, departed, forgotten, suspect, partition,
  heal, mode), oldest first. Poll with the last id you saw.

  Local; the history is bounded (the last 1,000 events).
  """

  use ClusterScope.Operation, name: "cluster_events"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/events",
      summary: "Cluster events after an event id",
      parameters: [
        %{
          name: :since,
          type: :integer,
          min: 0,
          default: 0,
          location: :query,
          description: "return events with a greater id"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1_000,
          default: 100,
          location: :query,
          description: "at most this many"
        }
      ],
      responses: %{200 => %{description: "the events"}}
    }
  end

  @impl true
  def execute(%{since: since, limit: limit}) do
    events = ClusterScope.Cluster.State.events(since, limit)
    last = events |> List.last() |> then(&if(&1, do: &1.id, else: since))
    {:ok, %{events: events, last_id: last}}
  end
end
