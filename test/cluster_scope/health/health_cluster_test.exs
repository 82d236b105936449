defmodule ClusterScope.Health.ClusterTest do
  # Health across real nodes: a peer's alerts in the cluster-wide views, a
  # membership change resetting baselines here, and a frozen peer reported
  # in node_errors within the node timeout.
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.Health
  alias ClusterScope.Test.{Cluster, HTTP}
  alias ClusterScope.Web.Endpoint

  @moduletag :cluster
  @moduletag timeout: 120_000

  setup do
    {:ok, endpoint} = Endpoint.start(port: 0)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{url: endpoint.url}
  end

  test "a peer's alerts are in cluster alerts and health; a frozen peer is a node error", %{
    url: url
  } do
    changes = Health.status().membership_changes

    # A visible member of the cluster, controlled over standard I/O (which
    # still works while its distribution is frozen).
    [peer] = Cluster.start(1, observer: :visible)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{peer.os_pid}"]) end)
    name = Atom.to_string(peer.node)

    deadline = System.monotonic_time(:millisecond) + 10_000

    assert Cluster.poll(deadline, fn -> peer.node in Heartbeat.agent_nodes() end),
           "#{peer.node} never joined the agents: #{inspect(Heartbeat.agent_nodes())}"

    # Its nodeup reaches this node's monitor (its own message, handled in
    # its own time): size-dependent baselines reset.
    assert Cluster.poll(deadline, fn -> Health.status().membership_changes > changes end)

    peer_count = Cluster.call(peer, :erlang, :system_info, [:process_count])

    {:ok, _} =
      Cluster.call(peer, Health, :set_alert_thresholds, [
        %{process_count: %{warning: div(peer_count, 2)}}
      ])

    Cluster.call(peer, Health, :sample_now, [])

    assert {200, %{"data" => data, "metadata" => meta}, _} =
             HTTP.get(url <> "/api/v1/cluster/alerts")

    assert [alert] = Enum.filter(data["alerts"], &(&1["node"] == name))
    assert alert["metric"] == "process_count" and alert["severity"] == "warning"
    assert data["by_node"][name] == 1
    assert meta["partial"] == false

    {:ok, health} = ClusterScope.run("cluster_health")
    assert [%{metric: :process_count}] = health.per_node[peer.node].alerts
    assert health.per_node[peer.node].summary.process_count > 0
    assert health.status in [:degraded, :critical]
    assert Enum.any?(health.alerts, &(&1.node == peer.node))

    # Frozen: it cannot answer. Both calls (made at once, before Erlang's
    # own tick timeout drops the connection) give up on it within the node
    # timeout, or skip it at once when this node already suspects it.
    :ok = Cluster.freeze(peer)
    bound = ClusterScope.Config.get(:node_timeout_ms) + 2_000
    timed = fn fun -> Task.async(fn -> :timer.tc(fun) end) end
    alerts_task = timed.(fn -> HTTP.get(url <> "/api/v1/cluster/alerts") end)
    health_task = timed.(fn -> ClusterScope.run("cluster_health") end)

    {elapsed, response} = Task.await(alerts_task, 30_000)
    assert div(elapsed, 1_000) < bound
    assert {200, %{"data" => data, "metadata" => meta}, _} = response
    assert %{"reason" => reason} = Enum.find(data["node_errors"], &(&1["node"] == name))
    assert is_binary(reason)
    assert meta["partial"] == true
    assert Enum.any?(meta["node_errors"], &(&1["node"] == name))
    refute Enum.any?(data["alerts"], &(&1["node"] == name))

    {elapsed, {:ok, health}} = Task.await(health_task, 30_000)
    assert div(elapsed, 1_000) < bound
    assert Enum.any?(health.node_errors, &(&1.node == peer.node))
    refute Map.has_key?(health.per_node, peer.node)
    assert health.status in [:degraded, :critical]

    :ok = Cluster.resume(peer)
  end
end
