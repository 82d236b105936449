defmodule ClusterScope.Health.SamplingOptionsTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Health.SamplingOptions, as: Opts

  test "defaults follow the configured interval" do
    assert Opts.defaults(500) == %{
             base_interval: 500,
             max_interval: 8_000,
             max_interval_set: nil,
             budget: 0.01,
             scan_interval: 10_000
           }
  end

  test "valid options apply; the maximum follows the interval unless set" do
    d = Opts.defaults(1_000)

    assert {:ok, %{base_interval: 200, max_interval: 3_200}} =
             Opts.apply_changes(d, interval_ms: 200)

    assert {:ok, %{base_interval: 200, max_interval: 900, max_interval_set: 900}} =
             Opts.apply_changes(d, %{interval_ms: 200, max_interval_ms: 900})

    assert {:ok, %{budget: 1.0}} = Opts.apply_changes(d, cost_budget: 1)
    assert {:ok, %{scan_interval: 100}} = Opts.apply_changes(d, scan_interval_ms: 100)
    {:ok, set} = Opts.apply_changes(d, max_interval_ms: 900, interval_ms: 100)

    assert {:ok, %{max_interval: 1_600, max_interval_set: nil}} =
             Opts.apply_changes(set, max_interval_ms: nil)
  end

  test "every bad option is reported with its field; nothing applies" do
    d = Opts.defaults(1_000)

    assert {:error, errors} =
             Opts.apply_changes(d, interval_ms: 5, cost_budget: 0, scan_interval_ms: "x", bogus: 1)

    assert Enum.map(errors, & &1.field) == [
             "interval_ms",
             "cost_budget",
             "scan_interval_ms",
             "bogus"
           ]

    assert Enum.all?(errors, &is_binary(&1.message))
  end

  test "a maximum below the interval is refused" do
    assert {:error, [%{field: "max_interval_ms", message: msg}]} =
             Opts.apply_changes(Opts.defaults(1_000), interval_ms: 2_000, max_interval_ms: 1_000)

    assert msg =~ "at least interval_ms (2000)"
  end

  test "input that is not options is an error, never a crash, and makes no atoms" do
    d = Opts.defaults(1_000)
    assert {:error, [%{field: "opts"}]} = Opts.apply_changes(d, "interval_ms=5")
    assert {:error, [%{field: "opts"}]} = Opts.apply_changes(d, [:interval_ms])

    assert {:error, [%{field: "interval_ms_unknown_zz"}]} =
             Opts.apply_changes(d, %{"interval_ms_unknown_zz" => 5})

    assert_raise ArgumentError, fn -> String.to_existing_atom("interval_ms_unknown_zz") end
    assert {:error, [%{field: "{1, 2}"}]} = Opts.apply_changes(d, %{{1, 2} => 5})
  end

  test "through the monitor: a list that is not options is refused, the monitor lives on" do
    pid = Process.whereis(ClusterScope.Health.Monitor)
    status = ClusterScope.Health.status()

    assert {:error, [%{field: "opts"}]} = ClusterScope.Health.configure_sampling([:interval_ms])
    assert Process.whereis(ClusterScope.Health.Monitor) == pid
    assert ClusterScope.Health.status().base_interval_ms == status.base_interval_ms
  end
end
