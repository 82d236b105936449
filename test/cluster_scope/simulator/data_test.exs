defmodule ClusterScope.Simulator.DataTest do
  # "Simulated mode is whole": every virtual node has processes, resources,
  # alerts, latency and build info, deterministic for a seed, and the process,
  # health and metrics operations answer for them with the shapes of real
  # answers, marked simulated.
  use ExUnit.Case, async: false

  alias ClusterScope.{Mode, Simulator}
  alias ClusterScope.Simulator.Data
  alias ClusterScope.Test.Cluster

  @moduletag timeout: 240_000

  setup do
    # Peers of earlier tests, gone, are still known here as down: they are
    # no part of the simulated cluster these tests compare answers against.
    Cluster.forget_gone()
    ClusterScope.Test.ModeSwitch.allow()
  end

  defp run!(op, params) do
    case ClusterScope.run(op, params) do
      {:ok, data} -> data
      other -> flunk("#{op} #{inspect(params)} failed: #{inspect(other, limit: 20)}")
    end
  end

  defp simulate(count, seed \\ 1) do
    {:ok, %{mode: :simulated, nodes: nodes}} =
      ClusterScope.run("set_mode", %{"mode" => "simulated", "nodes" => count, "seed" => seed})

    assert length(nodes) == count
    await_up(nodes)
    nodes
  end

  # Every virtual node up in the cluster state (the simulator's nodeups are
  # messages to it).
  defp await_up(nodes) do
    deadline = System.monotonic_time(:millisecond) + 10_000

    Cluster.poll(deadline, fn ->
      statuses = ClusterScope.Fanout.node_statuses()
      Enum.all?(nodes, &(statuses[&1] == :up))
    end) || flunk("virtual nodes never all up: #{inspect(ClusterScope.Fanout.node_statuses())}")
  end

  defp await_status(node, status) do
    deadline = System.monotonic_time(:millisecond) + 5_000

    Cluster.poll(deadline, fn -> ClusterScope.Fanout.node_statuses()[node] == status end) ||
      flunk("#{node} never #{status}: #{inspect(ClusterScope.Fanout.node_statuses())}")
  end

  # Keys of maps, recursively; lists as :list (their items are compared
  # where it matters), other values as :value.
  defp shape(%{} = map) when not is_struct(map),
    do: Map.new(map, fn {k, v} -> {k, shape(v)} end)

  defp shape(list) when is_list(list), do: :list
  defp shape(_), do: :value

  defp keys(map), do: map |> Map.keys() |> Enum.sort()

  # A process busy enough to show in a window ranked by reductions.
  defp busy_process do
    spawn(fn ->
      Stream.repeatedly(fn -> :erlang.phash2(make_ref()) end) |> Stream.run()
    end)
  end

  test "every operation answers for virtual nodes with the shapes of a real answer, marked simulated" do
    me = Atom.to_string(node())
    busy = busy_process()
    on_exit(fn -> Process.exit(busy, :kill) end)

    # Real answers first (this node, multi_node mode).
    real = %{
      page: run!("process_list", %{"limit" => 5}),
      window:
        run!("process_list", %{"limit" => 5, "sort_by" => "reductions", "window_ms" => 300}),
      details: run!("process_list", %{"limit" => 5, "include_details" => true}),
      distribution: run!("process_distribution", %{}),
      resources: run!("node_resources", %{"node" => me}),
      info: run!("node_info", %{"node" => me}),
      build: run!("node_build_info", %{"node" => me}),
      alerts: run!("cluster_alerts", %{}),
      health: run!("cluster_health", %{}),
      metrics: run!("operation_metrics", %{})
    }

    refute Map.has_key?(real.page, :simulated)
    assert [real_row | _] = real.page.processes
    assert [real_window_row | _] = real.window.processes
    # Real info of a plain process and of a behaviour (it has a state).
    plain = spawn(fn -> Process.sleep(:infinity) end)
    {:ok, agent} = Agent.start(fn -> %{a: 1} end)
    on_exit(fn -> Process.exit(plain, :kill) && Process.exit(agent, :kill) end)
    real_plain = run!("get_process_info", %{"pid" => ClusterScope.ProcessRef.to_string(plain)})
    real_server = run!("get_process_info", %{"pid" => ClusterScope.ProcessRef.to_string(agent)})
    assert Map.has_key?(real_server, :state)

    nodes = [s1 | _] = simulate(5)
    s1_text = Atom.to_string(s1)

    sim = %{
      page: run!("process_list", %{"limit" => 200}),
      window:
        run!("process_list", %{"limit" => 5, "sort_by" => "reductions", "window_ms" => 300}),
      details: run!("process_list", %{"limit" => 5, "include_details" => true}),
      distribution: run!("process_distribution", %{}),
      resources: run!("node_resources", %{"node" => s1_text}),
      info: run!("node_info", %{"node" => s1_text}),
      build: run!("node_build_info", %{"node" => s1_text}),
      alerts: run!("cluster_alerts", %{}),
      health: run!("cluster_health", %{}),
      metrics: run!("operation_metrics", %{})
    }

    for {op, answer} <- sim do
      assert answer[:simulated] == true or (op == :info and answer.live.simulated == true),
             "#{op} is not marked simulated: #{inspect(Map.keys(answer))}"

      expected = keys(real[op]) ++ if op == :info, do: [], else: [:simulated]
      assert keys(answer) == Enum.sort(expected), "#{op}: keys differ from a real answer"
      # What the HTTP API and the dashboard get: it encodes as JSON.
      assert {:ok, _} = ClusterScope.JSON.encode(answer), "#{op} does not encode as JSON"
    end

    # Process rows of virtual nodes: the real row's fields, every node there.
    virtual_rows = Enum.filter(sim.page.processes, &String.ends_with?(&1.node, "@simulated"))
    assert virtual_rows != []
    for row <- virtual_rows, do: assert(keys(row) == keys(real_row))
    assert Enum.all?(nodes, &(&1 in sim.page.nodes))
    assert node() in sim.page.nodes

    [top | _] = sim.window.processes
    assert keys(top) == keys(real_window_row)

    assert shape(Map.delete(sim.window.window, :nodes)) ==
             shape(Map.delete(real.window.window, :nodes))

    assert Enum.all?(nodes, &(Atom.to_string(&1) in sim.window.window.nodes))
    assert shape(sim.details.summary) == shape(real.details.summary)

    # The heat map has a row per node, virtual ones included, same cells.
    assert Enum.all?(
             nodes,
             &(Atom.to_string(&1) in Enum.map(sim.distribution.per_node, fn n -> n.node end))
           )

    assert keys(hd(sim.distribution.cells)) == keys(hd(real.distribution.cells))
    assert keys(hd(sim.distribution.per_node)) == keys(hd(real.distribution.per_node))

    # Resources: the sample and the monitor state of a real node, key for key.
    assert shape(sim.resources.sample) == shape(real.resources.sample)
    assert shape(sim.resources.status) == shape(real.resources.status)
    assert sim.resources.thresholds == real.resources.thresholds
    assert keys(sim.info.live) == Enum.sort(keys(real.info.live) ++ [:simulated])
    assert sim.info.simulated == true
    assert shape(Map.delete(sim.build, :simulated)) == shape(real.build)
    assert sim.build.node == s1

    # Health and alerts: per node parts shaped like a real node's.
    real_part = real.health.per_node[node()]

    for n <- nodes do
      assert shape(Map.delete(sim.health.per_node[n], :alerts)) ==
               shape(Map.delete(real_part, :alerts))

      assert Map.has_key?(sim.alerts.by_node, n)
    end

    # An alert of a virtual node has the fields of a real alert.
    real_alert =
      ClusterScope.Health.Alerts.instant(
        :run_queue_per_scheduler,
        10,
        %{warning: 4, critical: 16},
        node(),
        0
      )

    assert sim.alerts.alerts != []
    for a <- sim.alerts.alerts, do: assert(keys(a) == keys(real_alert))

    # Latency: every virtual node has p50/p99 per operation, like a real node.
    real_entry = hd(real.metrics.per_node[node()])

    for n <- nodes do
      entries = sim.metrics.per_node[n]
      assert length(entries) > 10
      for e <- entries, do: assert(keys(e) == keys(real_entry))
      assert Enum.all?(entries, &(&1.p50_us <= &1.p99_us and &1.count > 0))
    end

    # Info on a virtual process: the fields of a real process's info of
    # the same kind (a behaviour's has its state).
    all_virtual = run!("process_list", %{"node" => s1_text, "limit" => 1000}).processes
    server = Enum.find(all_virtual, &(&1.type == "gen_server"))
    other = Enum.find(all_virtual, &(&1.type in ["plain", "task", "proc_lib"]))

    for {v, real_info} <- [{server, real_server}, {other, real_plain}] do
      info = run!("get_process_info", %{"pid" => v.pid})
      assert keys(info) == keys(real_info)
      assert info.pid == v.pid and info.memory > 0
      assert info.initial_call == v.initial_call
      assert (info[:state_text] || info[:state_error]) =~ "simulated"
      assert {:ok, _} = ClusterScope.JSON.encode(info)
    end
  end

  test "the data is deterministic for a seed and differs between seeds" do
    # Pure: the same arguments, the same process table and hot spots.
    assert Data.processes(7, 2, 5) == Data.processes(7, 2, 5)
    assert Data.processes(7, 2, 5) != Data.processes(8, 2, 5)
    assert Data.hot_spots(7, 5) == Data.hot_spots(7, 5)
    assert Data.hot_spots(7, 5) |> Keyword.values() |> Enum.uniq() |> length() == 3

    identity = fn ->
      [s1, s2 | _] = simulate(4, 7)

      rows = Enum.map([s1, s2], &identities/1)

      counts =
        run!("process_distribution", %{}).cells
        |> Enum.filter(&String.ends_with?(&1.node, "@simulated"))
        |> Enum.map(&{&1.node, &1.application, &1.count})
        |> Enum.sort()

      # Virtual nodes' alerts only: this real node's depend on its load.
      alerts =
        run!("cluster_alerts", %{}).alerts
        |> Enum.filter(&Simulator.virtual?(&1.node))
        |> Enum.map(&{&1.node, &1.metric, &1.severity})
        |> Enum.sort()

      values = Data.resources(s2, 5_000).sample.values
      {rows, counts, alerts, values}
    end

    first = identity.()
    {:ok, _} = Mode.set(:multi_node)
    second = identity.()
    assert first == second
    {[rows | _], _, _, _} = first
    assert length(rows) > 100

    {:ok, _} = Mode.set(:multi_node)
    [_, s2 | _] = simulate(4, 8)
    {[_, seed7_rows], _, _, _} = first
    assert identities(s2) != seed7_rows
  end

  defp identities(node) do
    run!("process_list", %{"node" => Atom.to_string(node), "limit" => 1000}).processes
    |> Enum.map(&Map.take(&1, [:pid, :registered_name, :initial_call, :application, :type]))
    |> Enum.sort()
  end

  test "alerts follow the resources: the node with the long queue has the queue alert" do
    nodes = simulate(6, 3)
    hot = Data.hot_spots(3, 6)
    node_at = fn i -> Enum.find(nodes, &(&1 == :"sim_#{i}@simulated")) end
    # Virtual nodes' alerts only: this real node's depend on its load.
    alerts = run!("cluster_alerts", %{}).alerts |> Enum.filter(&(&1.node in nodes))

    for n <- nodes do
      resources = run!("node_resources", %{"node" => Atom.to_string(n)})
      v = resources.sample.values

      crossing =
        for {metric, levels} <- resources.thresholds.metrics,
            is_number(v[metric]),
            is_number(levels.warning) and v[metric] >= levels.warning,
            do: metric

      # The node's alerts are exactly the metrics over a threshold, in its
      # resources and in cluster_alerts alike.
      assert Enum.sort(Enum.map(resources.alerts, & &1.metric)) == Enum.sort(crossing)

      assert Enum.sort(for(a <- alerts, a.node == n, do: a.metric)) == Enum.sort(crossing)
    end

    queue_node = node_at.(hot[:queue])
    queue_res = run!("node_resources", %{"node" => Atom.to_string(queue_node)})
    assert queue_res.sample.values.max_message_queue_len >= 10_000
    [%{pid: queue_pid, name: "Shop.Mailer.Queue"} | _] = queue_res.sample.message_queues.top
    assert [alert] = Enum.filter(alerts, &(&1.metric == :max_message_queue_len))
    assert alert.node == queue_node
    assert alert.message =~ queue_pid

    # The longest queue of the process list is that process, on that node.
    [top | _] = run!("process_list", %{"sort_by" => "message_queue_len", "limit" => 3}).processes
    assert top.pid == queue_pid and top.registered_name == "Elixir.Shop.Mailer.Queue"

    busy = Enum.filter(alerts, &(&1.metric == :scheduler_utilization_pct))
    assert Enum.map(busy, & &1.node) == [node_at.(hot[:busy])]
    memory = Enum.filter(alerts, &(&1.metric == :memory_total_pct))
    assert Enum.map(memory, & &1.node) == [node_at.(hot[:memory])]
  end

  test "process list on virtual nodes: sort, filter, pages and window deltas advancing with time" do
    [s1 | _] = nodes = simulate(4, 5)
    s1_text = Atom.to_string(s1)
    hot = Data.hot_spots(5, 4)

    # Pages over one virtual node: every process once, in order.
    page = fn cursor ->
      params = %{"node" => s1_text, "limit" => 40, "sort_by" => "memory"}
      params = if cursor, do: Map.put(params, "cursor", cursor), else: params
      run!("process_list", params)
    end

    pages =
      Stream.unfold({page.(nil), 0}, fn
        nil -> nil
        {p, n} when n > 50 -> flunk("no last page after #{n} pages: #{inspect(p.next_cursor)}")
        {p, n} -> {p, if(p.next_cursor, do: {page.(p.next_cursor), n + 1}, else: nil)}
      end)
      |> Enum.to_list()

    rows = Enum.flat_map(pages, & &1.processes)
    assert length(pages) > 2
    assert length(rows) == length(Enum.uniq_by(rows, & &1.pid))
    assert Enum.map(rows, & &1.memory) == Enum.sort(Enum.map(rows, & &1.memory), :desc)
    assert Enum.all?(rows, &(&1.node == s1_text))

    [cell_total] =
      for n <- run!("process_distribution", %{"node" => s1_text}).per_node, do: n.process_count

    assert length(rows) == cell_total

    # Filters apply to virtual rows as to real ones.
    shop = run!("process_list", %{"application" => "shop", "limit" => 1000}).processes
    assert shop != [] and Enum.all?(shop, &(&1.application == "shop"))
    carts = run!("process_list", %{"name" => "*Shop.Cart.Session*", "limit" => 1000}).processes
    assert carts != [] and Enum.all?(carts, &(&1.initial_call =~ "Shop.Cart.Session"))
    assert Enum.map(carts, & &1.node) |> Enum.uniq() |> length() == length(nodes)

    sups = run!("process_list", %{"type" => "supervisor", "limit" => 1000}).processes
    assert Enum.all?(sups, &(&1.type == "supervisor"))

    # Window mode: the report builder of the busy node burns the most
    # reductions; deltas grow with the window.
    busy_node = "sim_#{hot[:busy]}@simulated"

    # The list is cluster-wide: this real node's processes rank among the
    # virtual ones (a busy process of another test can outrun the builder),
    # so the builder is the top of the virtual rows.
    virtual_top = fn rows ->
      hd(Enum.filter(rows, &String.ends_with?(&1.node, "@simulated")) ++ [nil])
    end

    w1 = run!("process_list", %{"sort_by" => "reductions", "window_ms" => 200, "limit" => 50})
    top = virtual_top.(w1.processes)

    assert top && top.node == busy_node and top.registered_name == "Elixir.Shop.Reports.Builder",
           "top of the window: #{inspect(Enum.take(w1.processes, 5))}"

    w2 = run!("process_list", %{"sort_by" => "reductions", "window_ms" => 1_000, "limit" => 50})
    top2 = virtual_top.(w2.processes)
    assert top2.pid == top.pid
    assert top2.reductions_delta > top.reductions_delta

    # Reductions advance with time between two lists.
    r = fn ->
      run!("process_list", %{"node" => busy_node, "sort_by" => "reductions", "limit" => 1}).processes
    end

    [a] = r.()
    Process.sleep(300)
    [b] = r.()
    assert a.pid == b.pid and b.reductions > a.reductions
  end

  test "failed and frozen virtual nodes answer like unavailable and suspected real nodes" do
    [s1, s2, s3 | _] = simulate(4)
    :ok = Simulator.fail(s2)
    :ok = Simulator.freeze(s3)
    await_status(s2, :down)
    refute ClusterScope.Fanout.node_statuses()[s3] == :up

    for {op, params} <- [
          {"process_list", %{"limit" => 5}},
          {"process_list", %{"limit" => 5, "window_ms" => 100}},
          {"process_distribution", %{}},
          {"cluster_alerts", %{}},
          {"cluster_health", %{}},
          {"operation_metrics", %{}}
        ] do
      answer = run!(op, params)
      errors = Map.new(answer.node_errors, &{&1.node, &1})
      assert errors[s2].status == :down, "#{op}: #{inspect(answer.node_errors)}"
      assert errors[s3].status != :up
      assert errors[s3].reason =~ "#{s3}"
      for e <- answer.node_errors, do: assert(keys(e) == [:node, :reason, :remediation, :status])
      refute Map.has_key?(errors, s1)
    end

    assert {:error, %{code: :node_unavailable}} =
             ClusterScope.run("node_resources", %{"node" => Atom.to_string(s2)})

    assert {:error, %{code: :node_unavailable}} =
             ClusterScope.run("node_build_info", %{"node" => Atom.to_string(s3)})

    assert %{live: %{error: %{status: :down}}} =
             run!("node_info", %{"node" => Atom.to_string(s2)})

    # A restart after the failure: a new incarnation, answering again.
    :ok = Simulator.restart(s2)
    await_status(s2, :up)
    assert %{node: ^s2} = run!("node_resources", %{"node" => Atom.to_string(s2)})

    # Cut off from this node by a partition: unreachable, like a real node.
    :ok = Simulator.restart(s3)
    await_status(s3, :up)
    [_, _, _, s4] = Simulator.virtual_nodes()
    :ok = Simulator.partition([[s4]])

    deadline = System.monotonic_time(:millisecond) + 5_000

    Cluster.poll(deadline, fn -> ClusterScope.Fanout.node_statuses()[s4] not in [nil, :up] end) ||
      flunk("#{s4} never cut off: #{inspect(ClusterScope.Fanout.node_statuses())}")

    list = run!("process_list", %{"limit" => 5})
    assert [%{node: ^s4, status: status}] = list.node_errors
    assert status != :up
    refute s4 in list.nodes
    assert s2 in list.nodes and s3 in list.nodes
  end

  test "process control on virtual processes: info, kill removes it, send is refused saying why" do
    [s1 | _] = simulate(3)
    [victim] = run!("process_list", %{"node" => Atom.to_string(s1), "limit" => 1}).processes

    killed = run!("kill_process", %{"pid" => victim.pid})
    assert killed.exited == true and killed.pid == victim.pid

    assert {:error, %{code: :not_found, message: message}} =
             ClusterScope.run("get_process_info", %{"pid" => victim.pid})

    assert message =~ "simulated"

    all = run!("process_list", %{"node" => Atom.to_string(s1), "limit" => 1000}).processes
    refute Enum.any?(all, &(&1.pid == victim.pid))

    other = hd(all)

    assert {:error, %{code: :unavailable} = error} =
             ClusterScope.run("send_message", %{
               "pid" => other.pid,
               "message" => 1,
               "mode" => "call"
             })

    assert error.message =~ "virtual process" and error.message =~ "runs no code"
    assert error.details.simulated == true

    # A pid never generated: not found, not a crash.
    assert {:error, %{code: :not_found}} =
             ClusterScope.run("get_process_info", %{"pid" => "0.999999.0@#{s1}"})

    # Operations that cannot reach a virtual node say so instead of calling it.
    assert {:error, trace_error} =
             ClusterScope.run("trace_process", %{"process" => other.pid, "messages" => "both"})

    assert trace_error.message =~ "virtual node of the simulated mode"

    assert %{node_errors: [%{node: ^s1, reason: reason}], nodes: []} =
             run!("set_alert_thresholds", %{
               "node" => Atom.to_string(s1),
               "thresholds" => %{"run_queue_per_scheduler" => %{"warning" => 5}}
             })

    assert reason =~ "virtual node"
  end

  for count <- [50, 100] do
    @tag count: count
    test "#{count} virtual nodes: every operation answers for each of them", %{count: count} do
      nodes = simulate(count)
      everyone = [node() | nodes]

      list = run!("process_list", %{"limit" => 100})
      assert Enum.sort(list.nodes) == Enum.sort(everyone)
      assert list.node_errors == []

      window = run!("process_list", %{"limit" => 10, "window_ms" => 200})
      assert length(window.window.nodes) == count + 1

      dist = run!("process_distribution", %{})
      assert length(dist.per_node) == count + 1

      health = run!("cluster_health", %{})
      assert map_size(health.per_node) == count + 1
      assert health.node_count >= count + 1

      alerts = run!("cluster_alerts", %{})
      assert map_size(alerts.by_node) == count + 1
      assert alerts.count >= 3

      metrics = run!("operation_metrics", %{})
      assert map_size(metrics.per_node) == count + 1

      last = Atom.to_string(List.last(nodes))
      assert %{node: _} = run!("node_resources", %{"node" => last})
      assert %{simulated: true} = run!("node_build_info", %{"node" => last})
    end
  end

  test "over HTTP, as the dashboard asks: virtual nodes' processes, resources, kill and send" do
    alias ClusterScope.Test.HTTP
    token = "sim-test-token-0123456789abcdef"
    {:ok, endpoint} = ClusterScope.Web.Endpoint.start(port: 0, token: token)
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    auth = [headers: [{"authorization", "Bearer " <> token}]]
    [s1 | _] = simulate(3)
    url = endpoint.url <> "/api/v1"

    assert {200, %{"data" => list}, _} =
             HTTP.get(url <> "/cluster/processes?node=#{s1}&limit=5&sort_by=reductions")

    assert list["simulated"] == true
    assert [%{"pid" => pid, "node" => node} | _] = list["processes"]
    assert node == Atom.to_string(s1)

    assert {200, %{"data" => res}, _} = HTTP.get(url <> "/cluster/nodes/#{s1}/resources")
    assert res["simulated"] == true and is_map(res["sample"]["values"])

    assert {200, %{"data" => %{"simulated" => true, "cells" => [_ | _]}}, _} =
             HTTP.get(url <> "/cluster/processes/distribution")

    assert {200, %{"data" => %{"simulated" => true, "per_node" => per_node}}, _} =
             HTTP.get(url <> "/metrics/operations")

    assert Map.has_key?(per_node, Atom.to_string(s1))

    # Mutations need the token, as for real processes.
    assert {401, _, _} = HTTP.post(url <> "/processes/#{pid}/kill", "{}")

    assert {200, %{"data" => %{"exited" => true}}, _} =
             HTTP.post(url <> "/processes/#{pid}/kill", "{}", auth)

    assert {404, _, _} = HTTP.get(url <> "/processes/#{pid}", auth)

    [%{"pid" => other} | _] =
      elem(HTTP.get(url <> "/cluster/processes?node=#{s1}&limit=1"), 1)["data"]["processes"]

    assert {503, %{"error" => error}, _} =
             HTTP.post(url <> "/processes/#{other}/message", ~s({"message": 1}), auth)

    assert error["message"] =~ "virtual process"
  end

  test "local_cluster stays bounded at 16 peers; simulated refuses past 100" do
    assert {:error, %{code: :invalid_params} = e} =
             ClusterScope.run("set_mode", %{"mode" => "local_cluster", "nodes" => 17})

    assert e.message =~ "nodes"

    assert {:error, %{code: :invalid_params}} =
             ClusterScope.run("set_mode", %{"mode" => "simulated", "nodes" => 101})

    assert Mode.current() == :multi_node
  end

  test "switching back to multi_node leaves no residue" do
    [s1 | _] = simulate(3)
    assert Simulator.running?()
    assert Data.active?()
    _ = run!("operation_metrics", %{})
    _ = run!("process_list", %{"limit" => 5})

    {:ok, %{mode: :multi_node}} = Mode.set(:multi_node)
    refute Simulator.running?()
    refute Data.active?()
    assert :ets.whereis(:cluster_scope_simulator) == :undefined
    assert Simulator.virtual_nodes() == []
    refute Simulator.virtual?(s1)

    for {op, params} <- [
          {"process_list", %{"limit" => 1000}},
          {"process_distribution", %{}},
          {"cluster_alerts", %{}},
          {"cluster_health", %{}},
          {"operation_metrics", %{}}
        ] do
      answer = run!(op, params)
      refute Map.has_key?(answer, :simulated)
      refute inspect(answer, limit: :infinity) =~ "@simulated", "#{op} still shows virtual nodes"
    end

    assert {:error, %{code: :invalid_params}} =
             ClusterScope.run("node_resources", %{"node" => Atom.to_string(s1)})

    assert {:error, %{code: :invalid_params}} =
             ClusterScope.run("get_process_info", %{"pid" => "0.100.0@#{s1}"})
  end
end
