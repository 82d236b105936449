defmodule ClusterScope.NodeViews.AppsDriftClusterTest do
  # Applications and code drift on real peers: three with ClusterScope,
  # one without (agentless).
  use ExUnit.Case, async: false

  alias ClusterScope.NodeViews.CodeDrift.Watch
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 240_000

  @probe :cs_drift_probe
  @partial :cs_partial_probe

  setup_all do
    [a, b, c] = peers = Cluster.start(3)
    bare = Cluster.start_agentless(a, 41)

    for p <- peers do
      assert Cluster.poll(System.monotonic_time(:millisecond) + 10_000, fn ->
               bare.node in Cluster.call(p, Node, :list, [])
             end)
    end

    %{a: a, b: b, c: c, bare: bare, peers: peers}
  end

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)

  defp name(peer), do: Atom.to_string(peer.node)

  defp app_spec(app, vsn) do
    {:application, app,
     [
       description: ~c"rolling deploy probe",
       vsn: String.to_charlist(vsn),
       modules: [],
       registered: [],
       applications: [:kernel, :stdlib]
     ]}
  end

  # A module compiled from forms: `v/0` returns `v`, so each version has
  # its own MD5. Never loaded on the test node.
  defp beam(module, v) do
    forms = [
      {:attribute, 1, :module, module},
      {:attribute, 1, :export, [v: 0]},
      {:function, 1, :v, 0, [{:clause, 1, [], [], [{:integer, 1, v}]}]}
    ]

    {:ok, ^module, bin} = :compile.forms(forms, [:binary])
    {:ok, {^module, md5}} = :beam_lib.md5(bin)
    {bin, Base.encode16(md5, case: :lower)}
  end

  defp load(peer, module, bin) do
    {:module, ^module} =
      Cluster.call(peer, :code, :load_binary, [module, ~c"#{module}.beam", bin])

    # The old version is purged so only the new one stays loaded.
    Cluster.call(peer, :code, :soft_purge, [module])
  end

  test "applications of every node, with a version injected on one peer", ctx do
    %{a: a, b: b, c: c, bare: bare} = ctx
    :ok = Cluster.call(a, :application, :load, [app_spec(:cs_rolling, "1.0.0")])
    :ok = Cluster.call(b, :application, :load, [app_spec(:cs_rolling, "1.1.0")])
    :ok = Cluster.call(c, :application, :load, [app_spec(:cs_rolling, "1.0.0")])
    :ok = Cluster.call(bare, :application, :load, [app_spec(:cs_rolling, "1.0.0")])
    :ok = Cluster.call(c, :application, :start, [:cs_rolling])
    :ok = Cluster.call(a, :application, :load, [app_spec(:cs_only_a, "0.1.0")])

    # global may drop a link to the agentless node to prevent overlapping
    # partitions; the view is asked of b once b sees it.
    assert Cluster.connect(b, bare.node)
    {:ok, data} = run(b, "cluster_applications", %{})
    all = Enum.sort(Enum.map([a, b, c, bare], &name/1))
    assert Enum.sort(data.nodes) == all
    assert data.node_errors == []

    # Every node's rows, each with its node; the agentless node answers too.
    rolling = Enum.filter(data.applications, &(&1.application == "cs_rolling"))

    assert Enum.sort(Enum.map(rolling, &{&1.node, &1.version, &1.status})) ==
             Enum.sort([
               {name(a), "1.0.0", :loaded},
               {name(b), "1.1.0", :loaded},
               {name(c), "1.0.0", :started},
               {name(bare), "1.0.0", :loaded}
             ])

    assert Enum.all?(rolling, &(&1.description == "rolling deploy probe"))

    for n <- all do
      assert Enum.any?(data.applications, &(&1.node == n and &1.application == "kernel"))
    end

    diff = Enum.find(data.differences, &(&1.application == "cs_rolling"))
    assert diff.kinds == [:versions, :status]

    assert diff.versions == [
             %{version: "1.0.0", nodes: Enum.sort([name(a), name(c), name(bare)])},
             %{version: "1.1.0", nodes: [name(b)]}
           ]

    assert diff.missing_on == []
    assert diff.started_on == [name(c)]
    assert diff.loaded_only_on == Enum.sort([name(a), name(b), name(bare)])

    only_a = Enum.find(data.differences, &(&1.application == "cs_only_a"))
    assert only_a.kinds == [:missing]
    assert only_a.missing_on == Enum.sort([name(b), name(c), name(bare)])
    assert only_a.versions == [%{version: "0.1.0", nodes: [name(a)]}]

    # Applications equal everywhere are not differences.
    refute Enum.any?(data.differences, &(&1.application in ["kernel", "stdlib"]))

    # Filters: two nodes, one application, differences only.
    {:ok, two} =
      run(a, "cluster_applications", %{
        "nodes" => "#{name(a)},#{name(c)}",
        "application" => "cs_rolling",
        "only_differences" => "true"
      })

    assert Enum.sort(two.nodes) == Enum.sort([name(a), name(c)])
    assert two.applications == []
    assert two.applications_total == 2
    assert [%{application: "cs_rolling", kinds: [:status]}] = two.differences

    {:ok, limited} = run(a, "cluster_applications", %{"limit" => 3})
    assert length(limited.applications) == 3
    assert limited.applications_total > 3

    # Bad input names the field.
    assert {:error, %{code: :invalid_params} = e} =
             run(a, "cluster_applications", %{"nodes" => "nosuch@127.0.0.1"})

    assert [%{field: "nodes"}] = e.details.fields

    assert {:error, %{code: :invalid_params} = e} =
             run(a, "cluster_applications", %{"limit" => "0", "only_differences" => "maybe"})

    assert Enum.sort(Enum.map(e.details.fields, & &1.field)) == ["limit", "only_differences"]
  end

  test "code drift: a module recompiled and loaded on one peer only, then everywhere", ctx do
    %{a: a, b: b, c: c, bare: bare} = ctx
    {v1, md5_1} = beam(@probe, 1)
    {v2, md5_2} = beam(@probe, 2)
    assert md5_1 != md5_2

    for p <- [a, b, c], do: load(p, @probe, v1)

    assert Cluster.connect(a, bare.node)
    {:ok, same} = run(a, "code_drift", %{"kind" => "different_versions"})
    assert Enum.sort(same.nodes) == Enum.sort([name(a), name(b), name(c)])
    refute Enum.any?(same.modules, &(&1.module == "cs_drift_probe"))
    # The agentless node cannot hash its code: named, not silently left out.
    assert [%{status: :not_running, agentless: true} = bare_error] = same.node_errors
    assert bare_error.node == bare.node
    assert Enum.all?(same.per_node, &(&1.modules > 100))

    load(b, @probe, v2)

    {:ok, drift} = run(c, "code_drift", %{})
    assert drift.drift
    assert drift.different_versions_total >= 1
    row = Enum.find(drift.modules, &(&1.module == "cs_drift_probe"))
    assert row.kind == :different_versions

    assert row.versions ==
             Enum.sort([
               %{md5: md5_1, nodes: Enum.sort([name(a), name(c)])},
               %{md5: md5_2, nodes: [name(b)]}
             ])

    assert row.not_loaded_on == []
    # Only the differing buckets were exchanged, not every module.
    assert drift.differing_buckets >= 1 and drift.differing_buckets < drift.buckets

    # A module loaded on one node only.
    {p1, p1_md5} = beam(@partial, 1)
    load(a, @partial, p1)

    {:ok, partial} = run(b, "code_drift", %{"kind" => "loaded_on_some_nodes"})
    prow = Enum.find(partial.modules, &(&1.module == "cs_partial_probe"))

    assert prow == %{
             module: "cs_partial_probe",
             kind: :loaded_on_some_nodes,
             versions: [%{md5: p1_md5, nodes: [name(a)]}],
             not_loaded_on: Enum.sort([name(b), name(c)])
           }

    assert Enum.all?(partial.modules, &(&1.kind == :loaded_on_some_nodes))

    # Pages follow next_after without repeating or skipping.
    pages = page_all(a, %{"limit" => "2"}, nil, [])
    {:ok, whole} = run(a, "code_drift", %{"limit" => "1000"})
    assert Enum.map(pages, & &1.module) == Enum.map(whole.modules, & &1.module)
    assert Enum.map(pages, & &1.module) == Enum.sort(Enum.map(pages, & &1.module))

    # Loaded everywhere at one version: cleared.
    load(b, @probe, v1)
    for p <- [b, c], do: load(p, @partial, p1)

    {:ok, cleared} = run(a, "code_drift", %{"nodes" => [name(a), name(b), name(c)]})
    refute Enum.any?(cleared.modules, &(&1.module in ["cs_drift_probe", "cs_partial_probe"]))
    assert cleared.node_errors == []

    # Bad input names the field.
    assert {:error, %{code: :invalid_params} = e} =
             run(a, "code_drift", %{"nodes" => "ghost@127.0.0.9"})

    assert [%{field: "nodes"}] = e.details.fields

    assert {:error, %{code: :invalid_params} = e} =
             run(a, "code_drift", %{"kind" => "some", "limit" => "100000"})

    assert Enum.sort(Enum.map(e.details.fields, & &1.field)) == ["kind", "limit"]
  end

  defp page_all(peer, params, after_name, acc) do
    params = if after_name, do: Map.put(params, "after", after_name), else: params
    {:ok, page} = run(peer, "code_drift", params)
    acc = acc ++ page.modules

    case page.next_after do
      nil -> acc
      next -> page_all(peer, params, next, acc)
    end
  end

  test "drift that lasts raises the health alert on the checking node, and clears", ctx do
    %{a: a, b: b, c: c} = ctx
    peers = [a, b, c]
    {v1, _} = beam(@probe, 11)
    {v2, _} = beam(@probe, 12)
    for p <- peers, do: load(p, @probe, v1)

    for p <- peers do
      Cluster.put_config(p, :code_drift_check_interval_ms, 300)
      Cluster.put_config(p, :code_drift_alert_after_ms, 1_500)
    end

    on_exit(fn ->
      for p <- peers do
        Cluster.put_config(p, :code_drift_check_interval_ms, 30_000)
        Cluster.put_config(p, :code_drift_alert_after_ms, 300_000)
      end
    end)

    # One node checks: the same choice everywhere.
    leaders = for p <- peers, do: Cluster.call(p, Watch, :leader, [[a.node, b.node, c.node]])
    assert [leader] = Enum.uniq(leaders)
    assert leader == Enum.min([a.node, b.node, c.node])
    checker = Enum.find(peers, &(&1.node == leader))
    others = peers -- [checker]

    for p <- peers, do: Cluster.call(p, Watch, :check_now, [])
    refute alert(checker)

    load(b, @probe, v2)

    # Seen drifting first, raised only once it has lasted the alert time.
    first =
      Cluster.poll(deadline(10_000), fn ->
        s = Cluster.call(checker, Watch, :status, [])
        s.drifting >= 1 && s
      end)

    assert first, "the watch never saw the drift"

    raised = Cluster.poll(deadline(20_000), fn -> alert(checker) end)
    assert raised, "no code_drift_modules alert on #{checker.node}"
    assert raised.severity == :warning
    assert raised.message =~ "different versions"

    status = Cluster.call(checker, Watch, :status, [])
    assert "cs_drift_probe" in status.persistent
    since = status.since["cs_drift_probe"]
    assert since >= first.checked_at_ms - 1
    assert status.checked_at_ms - since >= 1_500

    # The operation shows what the watch saw lasting, from any node.
    {:ok, seen} = run(hd(others), "code_drift", %{"kind" => "different_versions"})
    assert seen.watch.node == Atom.to_string(checker.node)
    assert "cs_drift_probe" in seen.watch.persistent
    assert seen.watch.alert_after_ms == 1_500

    # The other nodes measure nothing and raise nothing.
    for p <- others do
      assert %{leader?: false, value: 0} = Cluster.call(p, Watch, :status, [])
      refute alert(p)
    end

    load(b, @probe, v1)

    assert Cluster.poll(deadline(30_000), fn -> alert(checker) == nil end),
           "the alert did not clear once the module was loaded everywhere"

    assert %{drifting: 0, value: 0} = Cluster.call(checker, Watch, :status, [])
  end

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  defp alert(peer) do
    {:ok, alerts} = Cluster.call(peer, ClusterScope.Health, :local_alerts, [])
    Enum.find(alerts, &(&1.metric == :code_drift_modules))
  end
end
