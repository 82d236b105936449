defmodule ClusterScope.Cluster.HeartbeatTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Cluster.Heartbeat

  test "views nobody refreshed for long are dropped; this node's own is kept" do
    now = 100_000
    view = fn at -> %{version: 1, at_ms: at, view: %{}} end

    views = %{
      node() => view.(0),
      :"fresh@127.0.0.9" => view.(now - 500),
      :"stale_but_recent@127.0.0.9" => view.(now - 59_000),
      :"gone@127.0.0.9" => view.(now - 61_000)
    }

    assert views |> Heartbeat.prune(now, 60_000) |> Map.keys() |> Enum.sort() ==
             Enum.sort([node(), :"fresh@127.0.0.9", :"stale_but_recent@127.0.0.9"])
  end
end
