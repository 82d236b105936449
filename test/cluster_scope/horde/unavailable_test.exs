defmodule ClusterScope.Horde.UnavailableTest do
  # Without Horde (CI): the Horde operations are listed as unavailable and
  # answer 503 with a clear message; the health monitor has no Horde section.
  # Excluded when Horde is loadable (test_helper.exs: :no_horde).
  use ExUnit.Case, async: false

  @moduletag :no_horde

  alias ClusterScope.Operation.{Registry, Runner}
  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  @ops ~w(horde_registry_inspect horde_supervisor_inspect horde_cluster_members horde_process_start)

  @token "horde-unavailable-token-0123456789"

  test "the four Horde operations are listed as unavailable, naming Horde" do
    refute Code.ensure_loaded?(Horde.Registry)

    listed =
      for {meta, availability} <- Registry.list(),
          into: %{},
          do: {meta.name, {meta, availability}}

    for name <- @ops do
      assert {meta, {:error, reason}} = listed[name], "#{name} is not registered"
      assert meta.requires == [:horde]
      assert reason =~ "Horde is not available"
    end

    {:ok, %{operations: ops}} = ClusterScope.operations()

    for name <- @ops do
      op = Enum.find(ops, &(&1.name == name))
      assert op.available == false and op.unavailable_reason =~ "Horde"
    end
  end

  test "running one answers unavailable with the reason, before validating anything" do
    for name <- @ops do
      assert {:error, error, _meta} = Runner.run(name, %{"supervisor" => "X", "bogus" => 1})
      assert error.code == :unavailable
      assert error.message =~ "Horde"
    end
  end

  test "over HTTP: 503 with a JSON error that names Horde" do
    {:ok, endpoint} = Endpoint.start(port: 0, token: @token)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    auth = [{"authorization", "Bearer " <> @token}]

    for path <- ~w(/api/v1/horde/registries /api/v1/horde/supervisors /api/v1/horde/members) do
      # horde_registry_inspect is :sensitive (registry keys and values are
      # the host's data): the admin token reads all three.
      assert {503, %{"error" => e}, _} = HTTP.get(endpoint.url <> path, headers: auth)
      assert e["code"] == "unavailable"
      assert e["message"] =~ "Horde"
    end

    assert {503, %{"error" => e}, _} =
             HTTP.request(:post, endpoint.url <> "/api/v1/horde/supervisors/S/children",
               headers: auth,
               body: ~s({"module": "Agent"})
             )

    assert e["code"] == "unavailable" and e["details"]["reason"] =~ "Horde"
  end

  test "the health collector and sample have no Horde part" do
    assert ClusterScope.Health.Collectors.horde() == nil
    sample = ClusterScope.Health.sample_now()
    refute Map.has_key?(sample, :horde)
    refute Map.has_key?(sample.values, :horde_duplicates)
  end
end
