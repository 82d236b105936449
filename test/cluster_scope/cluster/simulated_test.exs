defmodule ClusterScope.Cluster.SimulatedTest do
  # The simulated mode: virtual nodes failed, frozen, partitioned and healed,
  # classified by the same Rust code, with the same events and output shapes
  # as a real cluster.
  use ExUnit.Case, async: false

  alias ClusterScope.{Mode, Simulator}
  alias ClusterScope.Test.Cluster

  @moduletag timeout: 120_000

  setup do
    ClusterScope.subscribe(:cluster)
    on_exit(fn -> Mode.set(:multi_node) end)
    ClusterScope.Test.ModeSwitch.allow()
  end

  defp await_event(fun, timeout \\ 3_000) do
    receive do
      {:cluster_scope, :cluster, event} ->
        if fun.(event), do: event, else: await_event(fun, timeout)
    after
      timeout -> flunk("no matching cluster event within #{timeout} ms")
    end
  end

  # Events of several nodes arrive in any order.
  defp await_all(_type, []), do: :ok

  defp await_all(type, nodes) do
    event = await_event(&(&1.type == type and &1.node in nodes), 10_000)
    await_all(type, List.delete(nodes, event.node))
  end

  defp status(expected) do
    deadline = System.monotonic_time(:millisecond) + 3_000

    Cluster.poll(deadline, fn ->
      {:ok, data} = ClusterScope.partitions()
      if data.classification.status == expected, do: data.classification
    end) ||
      flunk("classification never became #{expected}: #{inspect(ClusterScope.partitions())}")
  end

  test "virtual nodes fail, freeze, split and heal like real ones" do
    {:ok, %{mode: :simulated, nodes: nodes}} = Mode.set(:simulated, nodes: 4)
    assert Mode.current() == :simulated
    [s1, s2, s3, s4] = nodes
    for n <- nodes, do: await_event(&(&1.type == :up and &1.node == n))

    {:ok, topology} = ClusterScope.topology()
    assert topology.mode == :simulated
    sim = Enum.filter(topology.nodes, & &1.simulated)
    assert Enum.sort(Enum.map(sim, & &1.node)) == nodes
    assert length(Simulator.processes(s1)) == 4
    status(:healthy)

    # A crash: processes gone, connection closed, node down.
    [sup | _] = Simulator.processes(s1)
    ref = Process.monitor(sup)
    :ok = Simulator.fail(s1)
    assert_receive {:DOWN, ^ref, :process, _, _}
    down = await_event(&(&1.type == :down and &1.node == s1))
    assert down.details.reason == :connection_closed
    assert status(:node_down).down == [Atom.to_string(s1)]

    :ok = Simulator.restart(s1)
    await_event(&(&1.type == :heal))
    status(:healthy)

    # Frozen: silent but connected.
    :ok = Simulator.freeze(s2)
    assert %{details: %{status: :frozen}} = await_event(&(&1.type == :suspect and &1.node == s2))
    assert status(:frozen).frozen == [Atom.to_string(s2)]
    :ok = Simulator.restart(s2)
    status(:healthy)

    # A 3-2 split, this node on the majority side.
    :ok = Simulator.partition([[s3, s4]])
    partition = await_event(&(&1.type == :partition and &1.details.status == :split))
    assert partition.details.side == :majority
    c = status(:split)
    assert c.side == :majority
    assert Enum.sort(Enum.at(c.components, 1)) == Enum.map([s3, s4], &Atom.to_string/1)

    :ok = Simulator.heal()
    heal = await_event(&(&1.type == :heal))
    assert length(heal.details.pairs) == 6
    status(:healthy)

    # One-way and indirect, as in reality.
    :ok = Simulator.cut(s1, s2, :one_way)
    assert [%{not_hearing: a, silent: b}] = status(:one_way).one_way
    assert {a, b} == {Atom.to_string(s1), Atom.to_string(s2)}
    :ok = Simulator.heal()
    status(:healthy)
    :ok = Simulator.cut(s1, s2)
    assert [%{via: via}] = status(:indirect).indirect
    assert length(via) == 3
  end

  test "switching modes keeps subscriptions and the event history" do
    # The whole history (at most 1,000 events; a page of the default 100
    # would be the oldest 100 once earlier tests recorded more).
    {:ok, %{events: before, last_id: mark}} =
      ClusterScope.run("cluster_events", %{"limit" => 1_000})

    {:ok, _} = Mode.set(:simulated, nodes: 2)
    await_event(&(&1.type == :mode and &1.details.to == :simulated))
    {:ok, _} = Mode.set(:multi_node)
    await_event(&(&1.type == :mode and &1.details.to == :multi_node))

    # The events before the switches are still there, and the switches follow.
    {:ok, %{events: later}} = ClusterScope.run("cluster_events", %{"limit" => 1_000})
    assert before == [] or Enum.any?(later, &(&1.id == mark))
    {:ok, %{events: since}} = ClusterScope.run("cluster_events", %{"since" => mark})
    assert Enum.count(since, &(&1.type == :mode)) >= 2
    {:ok, topology} = ClusterScope.topology()
    refute Enum.any?(topology.nodes, & &1.simulated)
  end

  @tag :cluster
  test "local_cluster mode starts real peers that join, and stops them on the way out" do
    {:ok, %{mode: :local_cluster, nodes: nodes}} = Mode.set(:local_cluster, nodes: 2)
    assert length(nodes) == 2
    await_all(:up, nodes)

    deadline = System.monotonic_time(:millisecond) + 5_000

    assert Cluster.poll(deadline, fn ->
             {:ok, topology} = ClusterScope.topology()
             topology.mode == :local_cluster and Enum.all?(nodes, &(&1 in topology.agents))
           end)

    # The peers run ClusterScope: operations reach them.
    for n <- nodes, do: assert({:ok, %{node: ^n}} = ClusterScope.node_build_info(n))

    {:ok, %{mode: :multi_node}} = Mode.set(:multi_node)
    await_all(:down, nodes)
    refute Enum.any?(nodes, &(&1 in Node.list()))
  end

  @tag :cluster
  test "simulated and real outputs and events have the same shapes" do
    [a, _b, x] = peers = Cluster.start(3)

    for p <- peers do
      Cluster.await_run(
        p,
        "partition_status",
        &(map_size(&1.heartbeat.peers) == 2 and &1.classification.status == :healthy),
        10_000
      )
    end

    mark = Cluster.last_cluster_event(a)
    :ok = Cluster.kill(x)
    real_down = Cluster.await_cluster_event(a, &(&1.type == :down), after: mark)
    real_topology = Cluster.await_run(a, "cluster_topology", fn _ -> true end)
    real_partitions = Cluster.await_run(a, "partition_status", fn _ -> true end)

    {:ok, %{nodes: [s1 | _]}} = Mode.set(:simulated, nodes: 2)
    :ok = Simulator.fail(s1)
    sim_down = await_event(&(&1.type == :down))
    {:ok, sim_topology} = ClusterScope.topology()
    {:ok, sim_partitions} = ClusterScope.partitions()

    assert_same_shape(sim_down, real_down)
    assert_same_shape(sim_topology, real_topology)
    assert_same_shape(sim_partitions.classification, real_partitions.classification)
    assert Map.keys(sim_partitions) == Map.keys(real_partitions)
  end

  # The keys of maps (recursively, first element of lists), not the values.
  defp shape(map) when is_map(map) and not is_struct(map) do
    map
    |> Enum.reject(fn {k, _} -> is_atom(k) and k in [:matrix, :details, :metadata] end)
    |> Enum.filter(fn {k, _} -> is_atom(k) end)
    |> Map.new(fn {k, v} -> {k, shape(v)} end)
  end

  defp shape([%{} = first | _]), do: [shape(first)]
  defp shape(list) when is_list(list), do: :list
  defp shape(_), do: :value

  defp assert_same_shape(sim, real) do
    assert same_shape?(shape(sim), shape(real)),
           "simulated #{inspect(shape(sim))}\nreal #{inspect(shape(real))}"
  end

  # An empty list says nothing of its elements' shape: it matches a list of
  # maps (the test node, a hidden observer, knows no peer's protocol
  # version when it runs alone; the peer it compares with does).
  defp same_shape?(a, b) when is_map(a) and is_map(b),
    do: Map.keys(a) == Map.keys(b) and Enum.all?(a, fn {k, v} -> same_shape?(v, b[k]) end)

  defp same_shape?([a], [b]), do: same_shape?(a, b)
  defp same_shape?(:list, [_]), do: true
  defp same_shape?([_], :list), do: true
  defp same_shape?(a, b), do: a == b
end
