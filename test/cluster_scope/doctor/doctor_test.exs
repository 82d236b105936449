defmodule ClusterScope.DoctorTest do
  # Each misconfiguration ClusterScope.Doctor documents, made on a real peer
  # and found by cluster_doctor asked on another node.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 180_000

  setup do
    peers = Cluster.start(3)
    on_exit(fn -> Cluster.cleanup(peers) end)
    [a | _] = peers
    Cluster.await_run(a, "cluster_topology", &(length(&1.agents) >= 3), 15_000)
    %{peers: peers}
  end

  defp doctor(peer) do
    {:ok, data} = Cluster.call(peer, ClusterScope, :run, ["cluster_doctor", %{}], 15_000)
    data
  end

  defp ids(data, node), do: for(f <- data.findings, f.node == node, do: f.id)

  test "a healthy test cluster has nothing to report", %{peers: [a, b, c]} do
    data = doctor(a)
    assert data.status == :ok, inspect(data.findings)
    assert Enum.sort(data.checked_nodes) == Enum.sort([a.node, b.node, c.node])
  end

  test "an endpoint beyond loopback without a token, and without a read token", %{
    peers: [a, b, _]
  } do
    :ok = Cluster.put_config(b, :http, enabled: true, ip: {0, 0, 0, 0}, port: 4999)
    data = doctor(a)
    assert data.status == :critical
    assert [f] = for(f <- data.findings, f.id == :endpoint_exposed_without_token, do: f)
    assert f.node == b.node and f.severity == :critical
    assert f.message =~ "0.0.0.0:4999"
    assert f.remediation =~ "token"

    :ok =
      Cluster.put_config(b, :http,
        enabled: true,
        ip: {0, 0, 0, 0},
        port: 4999,
        token: String.duplicate("t", 24)
      )

    data = doctor(a)
    assert :endpoint_reads_open in ids(data, b.node)
    refute :endpoint_exposed_without_token in ids(data, b.node)
    # The token itself never appears.
    refute inspect(data) =~ String.duplicate("t", 24)
  end

  test "production nodes with unlimited tracing, dangerous actions, mode switching and a short tick",
       %{peers: [a, _, c]} do
    :ok = Cluster.put_config(c, :profile, :production)
    # The production profile alone caps tracing: nothing about tracing yet.
    refute :tracing_unlimited in ids(doctor(a), c.node)

    :ok = Cluster.put_config(c, :trace_max_rate, 50_000)
    :ok = Cluster.put_config(c, :allow_dangerous_actions, true)
    :ok = Cluster.put_config(c, :allow_mode_switch, true)
    found = ids(doctor(a), c.node)

    for id <- [
          :tracing_unlimited,
          :dangerous_actions_allowed,
          :mode_switch_allowed,
          :short_net_ticktime
        ],
        do: assert(id in found, "#{id} not in #{inspect(found)}")

    # The same options in the test profile are no finding.
    :ok = Cluster.put_config(c, :profile, :test)
    assert ids(doctor(a), c.node) == []
  end

  test "prevent_overlapping_partitions off and invalid options", %{peers: [a, b, _]} do
    :ok =
      Cluster.call(b, :application, :set_env, [:kernel, :prevent_overlapping_partitions, false])

    :ok = Cluster.put_config(b, :node_timeout_ms, -5)
    data = doctor(a)
    found = ids(data, b.node)
    assert :overlapping_partitions_allowed in found
    assert :config_errors in found
    assert Enum.find(data.findings, &(&1.id == :config_errors)).message =~ "node_timeout_ms"
    assert data.status == :warning
  end

  test "a connected node without ClusterScope", %{peers: [a | _]} do
    bare = Cluster.start_agentless(a, 40)
    data = doctor(a)
    assert [f] = for(f <- data.findings, f.id == :clusterscope_missing, do: f)
    assert f.message =~ to_string(bare.node)
  end

  test "the doctor command's exit status follows the worst finding", %{peers: [a, b, _]} do
    {0, _} = ClusterScope.Doctor.CLI.main(["--node", to_string(a.node)])

    :ok =
      Cluster.call(b, :application, :set_env, [:kernel, :prevent_overlapping_partitions, false])

    {1, out} = ClusterScope.Doctor.CLI.main(["--node", to_string(a.node)])
    assert IO.iodata_to_binary(out) =~ "WARNING #{b.node} overlapping_partitions_allowed"
    :ok = Cluster.put_config(b, :http, enabled: true, ip: {0, 0, 0, 0}, port: 4999)
    {2, _} = ClusterScope.Doctor.CLI.main(["--node", to_string(a.node)])
    {3, _} = ClusterScope.Doctor.CLI.main(["--bogus"])
  end
end
