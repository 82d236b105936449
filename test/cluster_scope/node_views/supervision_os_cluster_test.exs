defmodule ClusterScope.NodeViews.SupervisionOsClusterTest do
  # Supervision trees and OS data on real peers: a tree of one peer asked
  # from another, expanded lazily, with a suspended child supervisor
  # answered within the deadline; bad roots; OS data of every node; the
  # machine disk and memory alerts raised with low thresholds and cleared.
  use ExUnit.Case, async: false

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.{Cluster, SupTree}

  @moduletag :cluster
  @moduletag timeout: 240_000

  @tree :cs_view_tree

  setup_all do
    Cluster.forget_gone()
    [a, b, c] = Cluster.start(3)
    root = Cluster.call(b, SupTree, :start, [@tree, 3])
    # A node without ClusterScope, reached through a.
    bare = Cluster.start_agentless(a, 60)

    # global meshes it in (it may cut a link first to prevent overlapping
    # partitions): wait until every peer sees it.
    for p <- [a, b, c] do
      assert Cluster.poll(System.monotonic_time(:millisecond) + 15_000, fn ->
               bare.node in Cluster.call(p, Node, :list, [])
             end)
    end

    %{a: a, b: b, c: c, root: root, bare: bare}
  end

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)
  defp by_id(children, id), do: Enum.find(children, &(&1.id == id))

  test "a peer's tree from another node, lazily, with a stuck child supervisor", %{
    a: a,
    b: b,
    c: c,
    root: root
  } do
    node = Atom.to_string(b.node)

    assert {:ok, %{node: n, root: tree}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "cs_view_tree"})

    assert n == b.node and tree.node == b.node
    assert tree.pid == ProcessRef.to_string(root)
    assert tree.flags == %{strategy: :one_for_one, intensity: 7, period: 9}
    assert by_id(tree.children, ":inner").expanded == false

    inner = Cluster.call(b, SupTree, :child, [root, :inner])
    :ok = Cluster.call(b, :sys, :suspend, [inner])

    try do
      started = System.monotonic_time(:millisecond)

      assert {:ok, %{root: tree}} =
               run(a, "supervision_tree", %{
                 "node" => node,
                 "root" => "cs_view_tree",
                 "depth" => "2",
                 "call_timeout_ms" => "500"
               })

      elapsed = System.monotonic_time(:millisecond) - started
      assert by_id(tree.children, ":inner").expansion == :stuck
      dynamic = by_id(tree.children, ":dynamic")
      assert dynamic.expansion == :ok and length(dynamic.children) == 3
      assert Enum.all?(dynamic.children, &String.ends_with?(&1.pid, "@" <> node))
      assert elapsed < 5_000, "answered in #{elapsed} ms"

      # The stuck supervisor as the root: a timeout error, within the deadline.
      started = System.monotonic_time(:millisecond)

      assert {:error, %{code: :timeout, message: message}} =
               run(c, "supervision_tree", %{
                 "node" => node,
                 "root" => ProcessRef.to_string(inner),
                 "call_timeout_ms" => "300"
               })

      assert message =~ "did not answer within 300 ms"
      assert System.monotonic_time(:millisecond) - started < 5_000
    after
      Cluster.call(b, :sys, :resume, [inner])
    end

    # A restart on b shows on its supervisor, asked from c by pid.
    worker = Cluster.call(b, SupTree, :child, [root, :worker])
    true = Cluster.call(b, Process, :exit, [worker, :kill])

    assert Cluster.poll(System.monotonic_time(:millisecond) + 5_000, fn ->
             match?(
               {:ok, %{root: %{recent_restarts: %{count: 1}}}},
               run(c, "supervision_tree", %{"node" => node, "root" => ProcessRef.to_string(root)})
             )
           end)

    {:ok, %{root: tree}} =
      run(c, "supervision_tree", %{"node" => node, "root" => ProcessRef.to_string(root)})

    assert tree.found_by == :pid

    # `<0.X.Y>` without a node names a process of the node asked.
    [local, _node] = String.split(ProcessRef.to_string(root), "@", parts: 2)

    assert {:ok, %{root: %{pid: same}}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "<#{local}>"})

    assert same == ProcessRef.to_string(root)

    assert [%{kind: :child_terminated, child_id: ":worker", child_pid: pid_text}] =
             tree.recent_restarts.recent

    assert pid_text == ProcessRef.to_string(worker)

    # An application's top supervisor, resolved on b by name.
    assert {:ok, %{root: kernel}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "kernel", "limit" => "2"})

    assert kernel.found_by == %{application: "kernel"}
    assert kernel.name == ":kernel_sup" and length(kernel.children) == 2

    # No root: b's applications, each one's top supervisor a pid of b.
    assert {:ok, %{root: apps}} = run(a, "supervision_tree", %{"node" => node, "limit" => "500"})
    cs = Enum.find(apps.children, &(&1.id == "cluster_scope"))
    assert String.ends_with?(cs.pid, "@" <> node)
  end

  test "a node without ClusterScope: its tree read from here, a stuck supervisor within the deadline",
       %{a: a, bare: bare} do
    node = Atom.to_string(bare.node)

    assert {:ok, %{agentless: true, root: kernel}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "kernel", "limit" => "3"})

    assert kernel.found_by == %{application: "kernel"} and kernel.flags == nil
    assert length(kernel.children) == 3
    assert Enum.all?(kernel.children, &(&1.pid == nil or String.ends_with?(&1.pid, "@" <> node)))

    # The same shape as SupTree, which is not loadable there (no
    # ClusterScope code): under kernel's safe supervisor, data-only specs.
    root = start_bare_tree(bare)
    inner = bare_child(bare, root, :inner)
    :ok = Cluster.call(bare, :sys, :suspend, [inner])

    try do
      started = System.monotonic_time(:millisecond)

      assert {:ok, %{root: tree}} =
               run(a, "supervision_tree", %{
                 "node" => node,
                 "root" => ProcessRef.to_string(root),
                 "depth" => "2",
                 "call_timeout_ms" => "500"
               })

      assert System.monotonic_time(:millisecond) - started < 6_000
      assert by_id(tree.children, ":inner").expansion == :stuck
      dynamic = by_id(tree.children, ":dynamic")
      assert dynamic.expansion == :ok and length(dynamic.children) == 2
      assert tree.counts.specs == 3 and tree.recent_restarts == nil
    after
      Cluster.call(bare, :sys, :resume, [inner])
    end
  end

  defp start_bare_tree(bare) do
    agent = fn id -> %{id: id, start: {Agent, :start_link, [:erlang, :make_ref, []]}} end

    children = [
      agent.(:worker),
      %{
        id: :inner,
        type: :supervisor,
        start: {Supervisor, :start_link, [[agent.(:a), agent.(:b)], [strategy: :one_for_all]]}
      },
      %{
        id: :dynamic,
        type: :supervisor,
        start: {DynamicSupervisor, :start_link, [[strategy: :one_for_one]]}
      }
    ]

    spec = %{
      id: :cs_bare_tree,
      type: :supervisor,
      start: {Supervisor, :start_link, [children, [strategy: :one_for_one]]}
    }

    {:ok, root} = Cluster.call(bare, :supervisor, :start_child, [:kernel_safe_sup, spec])
    dynamic = bare_child(bare, root, :dynamic)

    for _ <- 1..2 do
      {:ok, _} = Cluster.call(bare, DynamicSupervisor, :start_child, [dynamic, agent.(nil)])
    end

    root
  end

  defp bare_child(bare, sup, id) do
    {^id, pid, _, _} =
      bare |> Cluster.call(Supervisor, :which_children, [sup]) |> List.keyfind(id, 0)

    pid
  end

  test "bad roots and nodes are clear errors", %{a: a, b: b, c: c, bare: bare} do
    node = Atom.to_string(b.node)

    assert {:error, %{code: :invalid_params, details: details}} =
             run(a, "supervision_tree", %{"node" => "nope@nowhere", "root" => "kernel"})

    assert inspect(details) =~ "node"

    not_sup = Cluster.call(b, Process, :whereis, [:application_controller])

    assert {:error, %{code: :invalid_params, message: message}} =
             run(a, "supervision_tree", %{"node" => node, "root" => ProcessRef.to_string(not_sup)})

    assert message =~ "is not a supervisor"

    dead = Cluster.call(b, :erlang, :spawn, [:erlang, :is_atom, [:x]])
    Process.sleep(50)

    assert {:error, %{code: :not_found, message: message}} =
             run(a, "supervision_tree", %{"node" => node, "root" => ProcessRef.to_string(dead)})

    assert message =~ "not alive"

    other = Cluster.call(c, Process, :whereis, [:kernel_sup])

    assert {:error, %{code: :invalid_params, message: message}} =
             run(a, "supervision_tree", %{"node" => node, "root" => ProcessRef.to_string(other)})

    assert message =~ "not of #{node}"

    assert {:error, %{code: :not_found}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "no_such_app_at_all"})

    assert {:error, %{code: :invalid_params}} =
             run(a, "supervision_tree", %{"node" => node, "root" => "kernel", "depth" => "9"})

    # A node without ClusterScope takes an application or a pid as root.
    bare_node = Atom.to_string(bare.node)

    assert {:error, %{code: :not_found, message: message}} =
             run(a, "supervision_tree", %{"node" => bare_node})

    assert message =~ "runs no ClusterScope"

    not_sup = Cluster.call(bare, Process, :whereis, [:application_controller])

    assert {:error, %{code: :invalid_params, message: message}} =
             run(a, "supervision_tree", %{
               "node" => bare_node,
               "root" => ProcessRef.to_string(not_sup)
             })

    assert message =~ "is not a supervisor"
  end

  test "OS data of every node, one at a time and all at once", %{
    a: a,
    b: b,
    c: c,
    bare: bare
  } do
    peers = [a, b, c]

    for peer <- peers do
      assert {:ok, os} = run(a, "node_os", %{"node" => Atom.to_string(peer.node)})
      assert os.node == peer.node
      assert os.memory.total_bytes > 0 and os.load.cpus > 0
      assert is_list(os.disks) and os.disks != []
    end

    assert {:ok, all} = run(a, "cluster_os", %{})
    for peer <- peers, do: assert(peer.node in all.nodes)
    assert Enum.all?(all.rows, &(is_atom(&1.node) and &1.memory.total_bytes > 0))
    assert all.summary.node_count == length(all.rows)
    assert all.summary.fullest_disk.node in all.nodes

    # The node without ClusterScope is read from a with OTP calls: its
    # /proc files, no df.
    assert [row] = Enum.filter(all.rows, &(&1.node == bare.node))
    assert row.agentless and row.memory.total_bytes > 0 and row.load.cpus > 0
    assert row.disks == nil and row.sources.disks == :agentless
    assert Enum.all?(all.rows -- [row], &(&1.agentless == false))

    refute Enum.any?(
             all.node_errors,
             &(&1.node in [bare.node | Enum.map(peers, fn p -> p.node end)])
           )

    assert {:ok, %{agentless: true, node: bare_node}} =
             run(b, "node_os", %{"node" => Atom.to_string(bare.node)})

    assert bare_node == bare.node

    assert {:ok, two} =
             run(a, "cluster_os", %{"nodes" => "#{b.node},#{c.node}", "disks" => "false"})

    assert Enum.sort(two.nodes) == Enum.sort([b.node, c.node])
    assert Enum.all?(two.rows, &(&1.disks == nil))

    # ClusterScope never starts os_mon; where the host runs it, disksup's
    # last check is read instead of running df.
    for peer <- peers, do: assert(Cluster.call(peer, Process, :whereis, [:os_mon_sup]) == nil)
    assert {:ok, [_ | _]} = Cluster.call(c, Application, :ensure_all_started, [:os_mon], 20_000)

    try do
      assert {:ok, os} = run(a, "node_os", %{"node" => Atom.to_string(c.node)})
      assert os.os_mon and os.sources.disks == :disksup
      assert [_ | _] = os.disks
      assert Enum.all?(os.disks, &(&1.fs_type not in ["tmpfs", "proc", "sysfs", "cgroup2"]))
    after
      Cluster.call(c, Application, :stop, [:os_mon], 20_000)
    end
  end

  test "machine disk and memory alerts: raised with low thresholds, cleared with hysteresis",
       %{a: a, b: b} do
    node = Atom.to_string(b.node)

    on_exit(fn -> Cluster.call(b, ClusterScope.Health.Monitor, :reset_thresholds, []) end)

    assert {:ok, _} =
             run(a, "set_alert_thresholds", %{
               "node" => node,
               "thresholds" => %{
                 "disk_usage_pct" => %{"warning" => 0.01},
                 "machine_memory_pct" => %{"warning" => 0.01}
               }
             })

    machine_alerts = fn ->
      case run(a, "cluster_alerts", %{}) do
        {:ok, %{alerts: alerts}} ->
          for %{node: n, metric: m} = alert <- alerts,
              n == b.node,
              m in [:disk_usage_pct, :machine_memory_pct],
              do: alert

        _ ->
          []
      end
    end

    deadline = System.monotonic_time(:millisecond) + 30_000

    assert Cluster.poll(deadline, fn -> length(machine_alerts.()) == 2 end),
           "alerts: #{inspect(machine_alerts.())}"

    disk = Enum.find(machine_alerts.(), &(&1.metric == :disk_usage_pct))
    assert disk.severity == :warning and disk.value > 0.01
    assert disk.message =~ "% full"

    # Back above the machine's values: cleared after clear_after_samples.
    assert {:ok, _} =
             run(a, "set_alert_thresholds", %{
               "node" => node,
               "thresholds" => %{
                 "disk_usage_pct" => %{"warning" => 99.98, "critical" => 99.99},
                 "machine_memory_pct" => %{"warning" => 99.98, "critical" => 99.99}
               }
             })

    deadline = System.monotonic_time(:millisecond) + 30_000

    assert Cluster.poll(deadline, fn -> machine_alerts.() == [] end),
           "still: #{inspect(machine_alerts.())}"
  end
end
