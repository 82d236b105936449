defmodule ClusterScope.Health.HTTPTest do
  # The health operations over real sockets with :httpc.
  use ExUnit.Case, async: false

  alias ClusterScope.Health
  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  @token "health-token-0123456789abcdef"

  setup_all do
    {:ok, endpoint} = Endpoint.start(port: 0, token: @token)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{url: endpoint.url}
  end

  setup do
    # Alerts left by an earlier test clear at the first sample with the
    # default thresholds.
    Health.reset_alert_thresholds()
    Health.sample_now()
    on_exit(fn -> Health.reset_alert_thresholds() end)
    :ok
  end

  defp auth, do: [{"authorization", "Bearer " <> @token}]
  defp me, do: Atom.to_string(node())

  defp put(url, body, headers \\ []),
    do: HTTP.request(:put, url, body: body, headers: headers)

  defp induce_warning do
    count = :erlang.system_info(:process_count)
    {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})
    Health.sample_now()
  end

  test "GET /api/v1/cluster/alerts lists every node's active alerts", %{url: url} do
    assert {200, %{"data" => data, "metadata" => meta}, _} =
             HTTP.get(url <> "/api/v1/cluster/alerts")

    refute Enum.any?(data["alerts"], &(&1["metric"] == "process_count"))
    assert meta["operation"] == "cluster_alerts"

    induce_warning()
    assert {200, %{"data" => data}, _} = HTTP.get(url <> "/api/v1/cluster/alerts")
    assert [alert] = Enum.filter(data["alerts"], &(&1["metric"] == "process_count"))

    assert %{
             "id" => _,
             "severity" => "warning",
             "node" => node,
             "value" => value,
             "threshold" => threshold,
             "started_at_ms" => _,
             "message" => message,
             "remediation" => [_ | _]
           } = alert

    assert node == me() and value > threshold and message =~ "processes"
    assert data["by_node"][me()] >= 1
    assert data["worst_severity"] in ["warning", "critical"]
    # Nodes left over from earlier tests of the suite may be listed as
    # unreachable; this node itself always answers.
    refute Enum.any?(data["node_errors"], &(&1["node"] == me()))

    assert {200, %{"data" => data}, _} =
             HTTP.get(url <> "/api/v1/cluster/alerts?severity=critical")

    refute Enum.any?(data["alerts"], &(&1["metric"] == "process_count"))

    assert {400, %{"error" => %{"code" => "invalid_params"}}, _} =
             HTTP.get(url <> "/api/v1/cluster/alerts?severity=loud")
  end

  test "PUT /api/v1/cluster/alerts/thresholds sets them on every node", %{url: url} do
    path = url <> "/api/v1/cluster/alerts/thresholds"
    body = ~s({"thresholds": {"process_count": {"warning": 123456}, "hysteresis": 0.2}})

    assert {401, %{"error" => %{"code" => "unauthorized"}}, _} = put(path, body)

    assert {200, %{"data" => data}, _} = put(path, body, auth())

    assert %{"metrics" => %{"process_count" => pc}, "hysteresis" => 0.2} =
             data["thresholds"][me()]

    assert pc == %{"warning" => 123_456, "critical" => nil}
    assert data["nodes"] == [me()]
    assert Health.thresholds().metrics.process_count.warning == 123_456

    # Only one node, named.
    body = ~s({"thresholds": {"process_count": {"warning": 654321}}, "node": "#{me()}"})
    assert {200, %{"data" => data}, _} = put(path, body, auth())
    assert data["thresholds"][me()]["metrics"]["process_count"]["warning"] == 654_321
  end

  test "PUT with bad thresholds names every bad field and changes nothing", %{url: url} do
    before = Health.thresholds()

    body =
      ~s({"thresholds": {"process_count": {"warning": "x"}, "nope": {}, "atom_usage_pct": {"warning": 95, "critical": 90}}})

    assert {400, %{"error" => error}, _} =
             put(url <> "/api/v1/cluster/alerts/thresholds", body, auth())

    assert error["code"] == "invalid_params"

    assert Enum.sort(Enum.map(error["details"]["fields"], & &1["field"])) ==
             ["thresholds.atom_usage_pct", "thresholds.nope", "thresholds.process_count.warning"]

    assert {400, %{"error" => error}, _} =
             put(url <> "/api/v1/cluster/alerts/thresholds", ~s({"node": "#{me()}"}), auth())

    assert [%{"field" => "thresholds"}] = error["details"]["fields"]
    assert Health.thresholds() == before
  end

  test "GET /api/v1/cluster/nodes/:node/resources has the sample and the throttling", %{url: url} do
    Health.sample_now()

    assert {200, %{"data" => data}, _} =
             HTTP.get(url <> "/api/v1/cluster/nodes/#{me()}/resources")

    assert data["node"] == me()
    sample = data["sample"]

    for key <- ~w(memory limits schedulers message_queues busy_dist_port connectivity values cost) do
      assert Map.has_key?(sample, key), "missing #{key}"
    end

    assert sample["memory"]["total_bytes"] > 0
    assert is_number(sample["schedulers"]["utilization_pct"])

    status = data["status"]
    assert status["interval_ms"] >= status["base_interval_ms"]
    assert is_boolean(status["throttled"])
    assert Map.has_key?(status, "reason") and is_list(status["skipped_collectors"])
    assert %{"typical_sample_us" => _, "budget" => 0.01} = status["own_cost"]

    assert data["thresholds"]["metrics"]["process_usage_pct"] == %{
             "warning" => 80,
             "critical" => 90
           }

    assert is_list(data["alerts"])

    assert {400, %{"error" => %{"details" => %{"fields" => [%{"field" => "node"}]}}}, _} =
             HTTP.get(url <> "/api/v1/cluster/nodes/nobody@nowhere/resources")
  end

  test "GET /api/v1/cluster/health adds each node's resources and alerts", %{url: url} do
    assert {200, %{"data" => data}, _} = HTTP.get(url <> "/api/v1/cluster/health")

    for key <- ~w(status connectivity nodes_by_status node_count connectivity_status
                  worst_alert_severity alerts per_node node_errors) do
      assert Map.has_key?(data, key), "missing #{key}"
    end

    assert data["status"] in ~w(healthy degraded critical)

    assert %{"status" => _, "alerts" => _, "summary" => summary, "throttled" => _} =
             data["per_node"][me()]

    assert summary["process_count"] > 0

    induce_warning()
    assert {200, %{"data" => data}, _} = HTTP.get(url <> "/api/v1/cluster/health")
    assert data["status"] in ~w(degraded critical)
    assert data["worst_alert_severity"] in ~w(warning critical)
    assert Enum.any?(data["per_node"][me()]["alerts"], &(&1["metric"] == "process_count"))
    assert Enum.any?(data["alerts"], &(&1["metric"] == "process_count"))
  end
end
