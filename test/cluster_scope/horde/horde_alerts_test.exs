defmodule ClusterScope.Horde.AlertsTest do
  # Finding 4: Horde findings have thresholds and raise alerts like the
  # other metrics (the values come from the health collector with Horde).
  use ExUnit.Case, async: true

  alias ClusterScope.Health.{Alerts, Thresholds}

  @metrics [:horde_skew, :horde_duplicates, :horde_lost_children, :horde_members_not_connected]

  test "the Horde metrics have default thresholds and can be changed by name" do
    d = Thresholds.defaults()
    for m <- @metrics, do: assert(m in Thresholds.metrics())
    assert d.metrics.horde_skew == %{warning: 2.0, critical: nil}
    assert d.metrics.horde_duplicates.warning == 1

    assert {:ok, t} =
             Thresholds.apply_changes(d, %{"horde_skew" => %{"warning" => 3, "critical" => 5}})

    assert t.metrics.horde_skew == %{warning: 3, critical: 5}

    assert {:error, [%{field: "horde_duplicates.warning"}]} =
             Thresholds.apply_changes(d, %{"horde_duplicates" => %{"warning" => -1}})
  end

  test "values at the thresholds raise alerts naming the Horde problem; nil values raise nothing" do
    ctx = %{
      node: node(),
      now_ms: 0,
      seq: 0,
      sample: %{horde: %{supervisors: [%{name: MySup, skew: 2.5}]}}
    }

    values = %{
      horde_skew: 2.5,
      horde_duplicates: 4,
      horde_lost_children: 2,
      horde_members_not_connected: 1
    }

    {_tracks, events, _seq} = Alerts.evaluate(%{}, values, Thresholds.defaults(), ctx)
    raised = for {:raised, a} <- events, into: %{}, do: {a.metric, a}

    assert Map.keys(raised) |> Enum.sort() == Enum.sort(@metrics)
    assert raised.horde_skew.message =~ "MySup" and raised.horde_skew.message =~ "2.5"
    assert raised.horde_duplicates.message =~ "4 Horde children run twice"
    assert raised.horde_lost_children.message =~ "not up"
    assert raised.horde_members_not_connected.remediation != []

    nils = Map.new(@metrics, &{&1, nil})
    assert {_, [], _} = Alerts.evaluate(%{}, nils, Thresholds.defaults(), ctx)
  end

  test "membership disagreements: an instant alert from one comparison, at the node's thresholds" do
    levels = Thresholds.defaults().metrics[:horde_membership_disagreements]
    assert levels == %{warning: 1, critical: nil}

    assert Alerts.instant(:horde_membership_disagreements, 0, levels, node(), 1) == nil
    assert Alerts.instant(:horde_membership_disagreements, nil, levels, node(), 1) == nil

    alert = Alerts.instant(:horde_membership_disagreements, 2, levels, node(), 42)
    assert %{severity: :warning, value: 2, threshold: 1, started_at_ms: 42} = alert
    assert alert.message =~ "2 nodes see other Horde members"
    assert Enum.any?(alert.remediation, &(&1 =~ "/api/v1/horde/members"))

    critical =
      Alerts.instant(:horde_membership_disagreements, 3, %{levels | critical: 3}, node(), 1)

    assert critical.severity == :critical
  end
end
