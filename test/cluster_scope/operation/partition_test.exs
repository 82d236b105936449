defmodule ClusterScope.Operation.PartitionTest do
  # The pure part of the partition policy check; the real partitions are in
  # partition_policy_test.exs (:chaos).
  use ExUnit.Case, async: true

  alias ClusterScope.Operation
  alias ClusterScope.Operation.Partition

  defp situation(status, side, component, unreachable) do
    %{
      status: status,
      side: side,
      component: component,
      unreachable: unreachable,
      description: ""
    }
  end

  test "anywhere is always allowed; no situation allows everything" do
    minority = situation(:split, :minority, ["x@h"], ["a@h", "b@h"])
    assert Partition.decide(:anywhere, minority) == :ok
    assert Partition.decide(:majority, nil) == :ok
    assert Partition.decide(:all_nodes, nil) == :ok
  end

  test "majority: refused on the minority side and in a tie, allowed on the majority side" do
    assert Partition.decide(:majority, situation(:split, :minority, ["x"], ["a", "b"])) ==
             {:refuse, :minority}

    assert Partition.decide(:majority, situation(:split, :tie, ["x", "y"], ["a", "b"])) ==
             {:refuse, :minority}

    assert Partition.decide(:majority, situation(:mixed, :minority, ["x"], ["a"])) ==
             {:refuse, :minority}

    assert Partition.decide(:majority, situation(:split, :majority, ["a", "b"], ["x"])) == :ok
    assert Partition.decide(:majority, situation(:node_down, :majority, ["a"], ["b"])) == :ok
    assert Partition.decide(:majority, situation(:healthy, :majority, ["a", "b"], [])) == :ok
  end

  test "all_nodes: refused whenever a node is not reachable, even on the majority side" do
    assert Partition.decide(:all_nodes, situation(:split, :majority, ["a", "b"], ["x"])) ==
             {:refuse, :unreachable}

    assert Partition.decide(:all_nodes, situation(:healthy, :majority, ["a"], ["b"])) ==
             {:refuse, :unreachable}

    assert Partition.decide(:all_nodes, situation(:healthy, :majority, ["a", "b"], [])) == :ok
  end

  test "the situation of a topology: own component, other components and nodes not up" do
    topology = %{
      node: node(),
      mode: :multi_node,
      nodes: [
        %{node: node(), status: :up},
        %{node: :a@h, status: :unreachable},
        %{node: :b@h, status: :unreachable},
        %{node: :gone@h, status: :departed}
      ],
      classification: %{
        status: :split,
        side: :minority,
        components: [["a@h", "b@h"], [to_string(node())]],
        self_component: 1,
        description: "split"
      }
    }

    s = Partition.from_topology(topology)
    assert s.status == :split
    assert s.side == :minority
    assert s.component == [to_string(node())]
    assert s.unreachable == ["a@h", "b@h"]
  end

  test "the refusal says the side, the unreachable nodes and how to force" do
    {:ok, meta} = Operation.meta(ClusterScope.Operations.SetAlertThresholds)
    s = situation(:split, :minority, [to_string(node()), "y@h"], ["a@h", "b@h"])
    error = Partition.refusal(meta, s, :minority)

    assert error.code == :partition
    assert error.message =~ "minority side"
    assert error.message =~ "cannot reach a@h, b@h"
    assert error.message =~ "reaches y@h"
    assert error.details.unreachable == ["a@h", "b@h"]
    assert error.details.policy == :majority
    assert Enum.any?(error.remediation, &(&1 =~ "force_partition: true"))
    assert ClusterScope.Error.http_status(error.code) == 503
  end

  describe "declared policies" do
    test "reads run anywhere and are idempotent; mutating operations declare theirs" do
      policies =
        for {meta, _} <- ClusterScope.Operation.Registry.list(),
            into: %{},
            do: {meta.name, {meta.partition, meta.idempotent}}

      assert policies["process_list"] == {:anywhere, true}
      assert policies["cluster_topology"] == {:anywhere, true}
      assert policies["kill_process"] == {:majority, false}
      assert policies["send_message"] == {:majority, false}
      assert policies["set_alert_thresholds"] == {:majority, true}
      assert policies["create_sandbox"] == {:majority, false}
      assert policies["destroy_sandbox"] == {:majority, true}
      assert policies["trace_process"] == {:anywhere, false}
      assert policies["set_mode"] == {:anywhere, true}

      for {meta, _} <- ClusterScope.Operation.Registry.list(), not meta.mutating do
        assert {meta.partition, meta.idempotent} == {:anywhere, true}, meta.name
      end
    end

    test "force_partition is a parameter exactly of the operations whose policy can refuse" do
      for {meta, _} <- ClusterScope.Operation.Registry.list() do
        has = Enum.any?(meta.parameters, &(&1.name == :force_partition))
        assert has == (meta.partition != :anywhere), meta.name
      end

      # A read refuses it as an unknown parameter.
      assert {:error, %ClusterScope.Error{code: :invalid_params}} =
               ClusterScope.run("cluster_topology", %{"force_partition" => "true"})
    end

    test "the OpenAPI document and the operations list carry the policy" do
      doc = ClusterScope.Web.OpenAPI.document()
      kill = doc["paths"]["/api/v1/processes/{pid}/kill"]["post"]
      assert kill["x-partition-policy"] == "majority"
      assert kill["x-idempotent"] == false

      body = kill["requestBody"]["content"]["application/json"]["schema"]["properties"]
      assert Map.has_key?(body, "force_partition")

      topo = doc["paths"]["/api/v1/cluster/topology"]["get"]
      assert topo["x-partition-policy"] == "anywhere"
      assert topo["x-idempotent"] == true

      {:ok, %{operations: ops}} = ClusterScope.run("list_operations", %{})
      thresholds = Enum.find(ops, &(&1.name == "set_alert_thresholds"))
      assert thresholds.partition == :majority
      assert thresholds.idempotent == true
    end

    test "the CLI takes --force-partition from the metadata" do
      {0, help} = ClusterScope.CLI.main(["set_alert_thresholds", "--help"])
      assert IO.iodata_to_binary(help) =~ "--force-partition"

      # Healthy here: it runs, forced or not, and the answer has no
      # partition facts (nothing was forced through). Same value: no change.
      warning = ClusterScope.Health.thresholds().metrics.process_usage_pct.warning
      thresholds = ~s({"process_usage_pct": {"warning": #{warning}}})

      {0, json} =
        ClusterScope.CLI.main([
          "set_alert_thresholds",
          "--thresholds",
          thresholds,
          "--force-partition",
          "true",
          "--json"
        ])

      {:ok, %{"metadata" => metadata}} =
        json |> IO.iodata_to_binary() |> String.trim() |> ClusterScope.JSON.decode()

      assert metadata["nodes_answered"] == [Atom.to_string(node())]
      refute Map.has_key?(metadata, "partition")
      {0, help} = ClusterScope.CLI.main(["cluster_topology", "--help"])
      refute IO.iodata_to_binary(help) =~ "--force-partition"
    end

    test "an unknown policy is refused when the metadata is read" do
      defmodule BadPolicy do
        use ClusterScope.Operation, name: "test_bad_policy", partition: :somewhere

        def rest_config,
          do: %{method: :post, path: "/api/v1/test/bad_policy", parameters: []}

        def execute(_), do: {:ok, %{}}
      end

      assert {:error, message} = Operation.meta(BadPolicy)
      assert message =~ "unknown partition policy :somewhere"
    end
  end

  test "every answer says which nodes answered" do
    {:ok, _data, meta} = ClusterScope.Operation.Runner.run("cluster_topology", %{})
    assert meta.nodes_answered == [node()]
    refute Map.has_key?(meta, :partition)

    {:ok, _data, meta} = ClusterScope.Operation.Runner.run("node_build_info", %{node: node()})
    assert meta.nodes_answered == [node()]
  end
end
