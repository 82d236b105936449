defmodule ClusterScope.NodeViews.CodeDriftTest do
  # The node-side reads, the NIF's refusals and the watch's pure rules, on
  # this node alone (the cluster behaviour is in apps_drift_cluster_test).
  use ExUnit.Case, async: false

  alias ClusterScope.Native
  alias ClusterScope.NodeViews.{Applications, CodeDrift}
  alias ClusterScope.NodeViews.CodeDrift.Watch

  test "local modules carry the MD5 of their loaded code" do
    modules = Map.new(CodeDrift.local_modules())
    assert modules["lists"] == :lists.module_info(:md5)
    assert modules["Elixir.Enum"] == Enum.module_info(:md5)
    assert modules[Atom.to_string(__MODULE__)] == __MODULE__.module_info(:md5)
    assert map_size(modules) == length(CodeDrift.local_modules())
  end

  test "the digest is compact and its buckets select the modules in them" do
    {:ok, d} = CodeDrift.local_digest(CodeDrift.buckets())
    assert byte_size(d.digest) == 12 + 8 * CodeDrift.buckets()
    assert d.modules == length(CodeDrift.local_modules())

    {:ok, all} = CodeDrift.local_select(CodeDrift.buckets(), Enum.to_list(0..255))
    assert length(all) == d.modules
    {:ok, none} = CodeDrift.local_select(CodeDrift.buckets(), [])
    assert none == []
    {:ok, some} = CodeDrift.local_select(CodeDrift.buckets(), [0, 1])
    assert length(some) < d.modules
  end

  test "one node compared with itself has no drift" do
    {:ok, data} = CodeDrift.cluster(%{nodes: [node()]})
    assert data.nodes == [Atom.to_string(node())]
    assert data.drift == false
    assert data.modules == []
    assert data.differing_buckets == 0
    assert data.compared_modules == 0
    assert [%{modules: n}] = data.per_node
    assert n > 100
  end

  test "the NIFs refuse bad input with the field named" do
    assert {:error, {:invalid_argument, "buckets:" <> _}} = Native.drift_digest([], 0)
    assert {:error, {:invalid_argument, "buckets:" <> _}} = Native.drift_digest([], 5_000)
    assert {:error, {:invalid_argument, "items:" <> _}} = Native.drift_digest(:nope, 16)

    assert {:error, {:invalid_argument, "items[1]:" <> _}} =
             Native.drift_digest([{"a", "1"}, {:b, "2"}], 16)

    assert {:error, {:invalid_argument, "wanted:" <> _}} =
             Native.drift_select([{"a", "1"}], 16, [16])

    {:ok, d8} = Native.drift_digest([{"a", "1"}], 8)
    {:ok, d16} = Native.drift_digest([{"a", "1"}], 16)

    assert {:error, {:invalid_argument, "digests[1]:" <> _}} = Native.drift_differing([d8, d16])

    assert {:error, {:invalid_argument, "digests[0]:" <> _}} = Native.drift_differing(["short"])

    assert {:error, {:invalid_argument, "nodes[0][0]:" <> _}} = Native.drift_compare([[{"a"}]])
  end

  test "the NIFs compare digests and items" do
    a = [{"x", "1"}, {"y", "1"}]
    b = [{"x", "2"}, {"y", "1"}]
    {:ok, da} = Native.drift_digest(a, 64)
    {:ok, db} = Native.drift_digest(Enum.reverse(a), 64)
    {:ok, dc} = Native.drift_digest(b, 64)
    assert da == db
    assert {:ok, []} = Native.drift_differing([da, db])
    assert {:ok, [bucket]} = Native.drift_differing([da, dc])
    assert {:ok, [{"x", "1"}]} = Native.drift_select(a, 64, [bucket])

    assert {:ok, [{"x", [{"1", [0]}, {"2", [1]}], []}, {"z", [{"9", [1]}], [0]}]} =
             Native.drift_compare([a, b ++ [{"z", "9"}]])
  end

  test "the watch counts only modules drifting for the alert time" do
    {seen, s} = Watch.step(%{}, %{"m" => %{}}, 1_000, 500)
    assert seen == %{"m" => 1_000}
    assert %{drifting: 1, value: 0, persistent: []} = s

    {seen, s} = Watch.step(seen, %{"m" => %{}, "n" => %{}}, 1_400, 500)
    assert seen == %{"m" => 1_000, "n" => 1_400}
    assert %{drifting: 2, value: 0} = s

    {seen, s} = Watch.step(seen, %{"m" => %{}, "n" => %{}}, 1_500, 500)
    assert %{value: 1, persistent: ["m"], since: %{"m" => 1_000}} = s

    # A module that stops drifting starts again from zero.
    {seen, s} = Watch.step(seen, %{"n" => %{}}, 1_600, 500)
    assert seen == %{"n" => 1_400}
    assert s.value == 0
    {_seen, s} = Watch.step(seen, %{"m" => %{}, "n" => %{}}, 2_000, 500)
    assert %{value: 1, persistent: ["n"]} = s

    {_, s} = Watch.step(%{}, %{}, 3_000, 0)
    assert %{drifting: 0, value: 0} = s
  end

  test "the watch's leader is the smallest connected agent, this node included" do
    assert Watch.leader([]) == node()
    assert Watch.leader([:zzz@nowhere, node()]) == node()
    # A node that is not connected is not chosen.
    assert Watch.leader([:a@nowhere]) == node()
  end

  test "the watch gives the monitor its value once it has checked" do
    status = Watch.check_now()
    assert %{leader?: true, value: 0} = status
    assert Watch.put_value(%{other: 1}) == %{other: 1, code_drift_modules: 0}
  end

  test "applications of this node, by OTP's own calls" do
    {:ok, data} = Applications.cluster(%{nodes: [node()]})
    kernel = Enum.find(data.applications, &(&1.application == "kernel"))
    assert kernel.status == :started
    assert kernel.version == to_string(Application.spec(:kernel, :vsn))
    assert kernel.node == Atom.to_string(node())
    assert data.differences == []
    assert data.applications_total == length(data.applications)
  end

  test "the operations validate their parameters" do
    assert {:error, %{code: :invalid_params} = e} =
             ClusterScope.run("code_drift", %{"nodes" => "x@y", "after" => 5})

    assert Enum.sort(Enum.map(e.details.fields, & &1.field)) == ["after", "nodes"]

    assert {:error, %{code: :invalid_params} = e} =
             ClusterScope.run("cluster_applications", %{"application" => 1, "bogus" => 1})

    assert Enum.sort(Enum.map(e.details.fields, & &1.field)) == ["application", "bogus"]
  end

  test "both operations are in the OpenAPI document and on the command line" do
    paths = ClusterScope.Web.OpenAPI.document()["paths"]
    drift = paths["/api/v1/cluster/code_drift"]["get"]
    apps = paths["/api/v1/cluster/applications"]["get"]
    assert Enum.map(drift["parameters"], & &1["name"]) == ~w(nodes kind limit after)

    assert Enum.map(apps["parameters"], & &1["name"]) ==
             ~w(nodes application only_differences limit)

    {0, out} = ClusterScope.CLI.main(~w(code_drift --kind different_versions --limit 5))
    out = IO.iodata_to_binary(out)
    assert out =~ "different_versions_total: 0"
    assert out =~ "drift: false"

    {0, out} = ClusterScope.CLI.main(~w(cluster_applications --application kernel --json))

    assert {:ok,
            %{
              "data" => %{"applications" => [%{"application" => "kernel", "status" => "started"}]}
            }} = ClusterScope.JSON.decode(IO.iodata_to_binary(out))

    {code, out} = ClusterScope.CLI.main(~w(code_drift --kind nope))
    assert code != 0
    assert IO.iodata_to_binary(out) =~ "kind"
  end
end
