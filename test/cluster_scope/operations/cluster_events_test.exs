defmodule ClusterScope.Operations.ClusterEventsTest do
  use ExUnit.Case, async: true

  test "a huge since is invalid_params naming the field, not a crash or a bignum" do
    # GET /api/v1/cluster/events?since=23333774473005098860544 once answered
    # 500: the bignum passed validation and broke the JSON of the answer.
    assert {:error, %ClusterScope.Error{code: :invalid_params} = error} =
             ClusterScope.run("cluster_events", %{"since" => "23333774473005098860544"})

    assert [%{field: "since", message: message}] = error.details.fields
    assert message =~ "at most 9223372036854775807"
    assert ClusterScope.Error.http_status(error.code) == 400
  end

  test "the largest accepted since answers, and its answer encodes as JSON" do
    max = "9223372036854775807"
    assert {:ok, data} = ClusterScope.run("cluster_events", %{"since" => max})
    assert data.events == []
    assert {:ok, json} = ClusterScope.JSON.encode(data)
    assert json =~ max
  end
end
