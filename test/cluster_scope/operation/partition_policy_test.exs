defmodule ClusterScope.Operation.PartitionPolicyTest do
  # Partition-aware execution on real peers: a mutating operation refused on
  # the minority side of a real split (iptables) and run with
  # force_partition, allowed on the majority side; and an idempotent read
  # retried until a node that failed transiently (SIGSTOP) answers.
  use ExUnit.Case, async: false

  alias ClusterScope.Operation.Runner
  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 240_000

  defp run(peer, op, params, opts \\ []),
    do: Cluster.call(peer, Runner, :run, [op, params, opts], 60_000)

  defp text(pid), do: ProcessRef.to_string(pid)
  defp alive?(peer, pid), do: Cluster.call(peer, Process, :alive?, [pid])
  defp name(peer), do: Atom.to_string(peer.node)

  defp healthy(peers) do
    n = length(peers)

    for p <- peers do
      Cluster.await_run(
        p,
        "partition_status",
        &(&1.classification.status == :healthy and map_size(&1.heartbeat.peers) == n - 1),
        15_000
      )
    end
  end

  defp warning(peer) do
    Cluster.call(peer, ClusterScope.Health, :thresholds, []).metrics.process_usage_pct.warning
  end

  defp thresholds(warning),
    do: %{"thresholds" => %{"process_usage_pct" => %{"warning" => warning}}}

  @tag :chaos
  test "a mutating operation is refused on the minority side, runs with force_partition, " <>
         "and runs on the majority side" do
    [a, b, x] = peers = Cluster.start(3)
    healthy(peers)

    Cluster.cut_all([{a, x}, {b, x}])

    Cluster.await_run(
      x,
      "partition_status",
      &(&1.classification.status == :split and &1.classification.side == :minority),
      15_000
    )

    Cluster.await_run(
      a,
      "partition_status",
      &(&1.classification.status == :split and &1.classification.side == :majority),
      15_000
    )

    # -- the minority side: set_alert_thresholds across the cluster --------
    before = warning(x)
    assert before != 71

    assert {:error, error, meta} = run(x, "set_alert_thresholds", thresholds(71))
    assert error.code == :partition
    assert error.message =~ "set_alert_thresholds"
    assert error.message =~ "#{x.node} is on the minority side"
    assert error.message =~ "cannot reach #{Enum.join(Enum.sort([name(a), name(b)]), ", ")}"
    assert Enum.sort(error.details.unreachable) == Enum.sort([name(a), name(b)])
    assert error.details.side == :minority
    assert Enum.any?(error.remediation, &(&1 =~ "force_partition: true"))
    assert Enum.any?(error.remediation, &(&1 =~ "majority side"))
    assert meta.partition.forced == false
    assert meta.nodes_answered == []
    # Nothing changed.
    assert warning(x) == before

    # Forced: it runs, on the nodes this side reaches, and says so.
    assert {:ok, data, meta} =
             run(x, "set_alert_thresholds", Map.put(thresholds(71), "force_partition", true))

    assert meta.partition.forced == true
    assert meta.partition.side == :minority
    assert Enum.sort(meta.partition.unreachable) == Enum.sort([name(a), name(b)])
    assert data.nodes == [x.node]
    assert meta.nodes_answered == [x.node]
    assert warning(x) == 71

    # -- the minority side: kill of a process there ------------------------
    victim = Cluster.call(x, :erlang, :spawn, [:timer, :sleep, [120_000]])
    assert {:error, %{code: :partition}, _} = run(x, "kill_process", %{"pid" => text(victim)})
    assert alive?(x, victim)

    assert {:ok, killed, meta} =
             run(x, "kill_process", %{"pid" => text(victim), "force_partition" => "true"})

    assert killed.exited
    assert meta.partition.forced
    refute alive?(x, victim)

    # -- the majority side: both run, without force --------------------------
    assert {:ok, data, meta} = run(a, "set_alert_thresholds", thresholds(72))
    refute Map.has_key?(meta, :partition)
    assert Enum.sort(data.nodes) == Enum.sort([a.node, b.node])
    assert Enum.sort(meta.nodes_answered) == Enum.sort([a.node, b.node])
    assert [%{node: node}] = meta.node_errors
    assert node == x.node
    assert warning(a) == 72 and warning(b) == 72
    # The other side kept its own.
    assert warning(x) == 71

    victim = Cluster.call(b, :erlang, :spawn, [:timer, :sleep, [120_000]])
    assert {:ok, killed, meta} = run(a, "kill_process", %{"pid" => text(victim)})
    assert killed.exited
    assert meta.nodes_answered == [b.node]
    refute alive?(b, victim)

    # Reads run anywhere, on both sides.
    assert {:ok, _, %{nodes_answered: [node]}} = run(x, "cluster_topology", %{})
    assert node == x.node
  end

  test "an idempotent read retries a node that failed transiently, within its deadline" do
    [a, b] = peers = Cluster.start(2)
    healthy(peers)
    # A node timeout of 1 s on a: b, frozen for 1.6 s, misses the first
    # attempt and answers a later one.
    :ok = Cluster.put_config(a, :node_timeout_ms, 1_000)

    :ok = Cluster.freeze(b)
    on_exit(fn -> Cluster.resume(b) end)

    resume =
      Task.async(fn ->
        Process.sleep(1_600)
        Cluster.resume(b)
      end)

    started = System.monotonic_time(:millisecond)

    assert {:ok, data, meta} = run(a, "node_resources", %{"node" => name(b)}, timeout: 10_000)

    took = System.monotonic_time(:millisecond) - started
    Task.await(resume)

    assert meta.nodes_answered == [b.node]
    assert meta.node_errors == []
    assert is_map(data)
    # The first attempt timed out (1 s): the answer came from a retry.
    assert took >= 1_000
    assert meta.duration_us >= 1_000_000

    # The same freeze outlasting the deadline: bounded, a timeout node
    # error with the attempts made, never past the operation's timeout.
    :ok = Cluster.freeze(b)

    resume =
      Task.async(fn ->
        Process.sleep(4_000)
        Cluster.resume(b)
      end)

    assert {:error, error, meta} = run(a, "node_resources", %{"node" => name(b)}, timeout: 2_500)
    Task.await(resume, 10_000)
    assert error.code == :node_unavailable
    assert error.message =~ "did not answer in time"
    assert error.details.attempts >= 2
    assert meta.duration_us < 2_500_000
  end
end
