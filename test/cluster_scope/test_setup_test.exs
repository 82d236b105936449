defmodule ClusterScope.Test.SetupTest do
  # The test helper's decision, run with CI=true and failing capabilities:
  # under CI a skipped :cluster or :chaos test is an error, never silent.
  use ExUnit.Case, async: true

  alias ClusterScope.Test.Setup

  @base [:bench, :browser]

  test "everything available: nothing more is excluded" do
    assert Setup.decide(@base, true, :ok, fn -> :ok end) == {:run, @base, []}
    assert Setup.decide(@base, false, :ok, fn -> :ok end) == {:run, @base, []}
  end

  test "CI=true and distribution failing: halt, naming :cluster and the cause" do
    assert {:halt, message} = Setup.decide(@base, true, {:error, :nxdomain}, fn -> :ok end)
    assert message =~ ":cluster"
    assert message =~ ":chaos"
    assert message =~ "distribution unavailable (:nxdomain)"
  end

  test "CI=true and no iptables or root: halt, naming :chaos" do
    assert {:halt, message} =
             Setup.decide(@base, true, :ok, fn -> {:error, "iptables is not installed"} end)

    assert message =~ ":chaos"
    refute message =~ ":cluster"
    assert message =~ "iptables is not installed"
  end

  test "outside CI a missing capability skips its tests, and says so" do
    assert {:run, exclude, [notice]} =
             Setup.decide(@base, false, {:error, :nxdomain}, fn -> flunk("not called") end)

    assert :cluster in exclude and :chaos in exclude and :bench in exclude
    assert notice =~ "Skipping :cluster and :chaos tests"

    assert {:run, exclude, [notice]} =
             Setup.decide(@base, false, :ok, fn -> {:error, "no root"} end)

    assert :chaos in exclude and :cluster not in exclude
    assert notice =~ "no root"
  end

  test "optional integrations: excluded with a notice when absent, never a halt" do
    assert Setup.optional(@base, libcluster: true) == {@base, []}
    assert {exclude, [notice]} = Setup.optional(@base, libcluster: false)
    assert exclude == @base ++ [:libcluster]
    assert notice =~ "Skipping :libcluster tests"
    assert notice =~ "ERL_LIBS"

    assert {[:libcluster, :horde], [_, _]} = Setup.optional([], libcluster: false, horde: false)
  end
end
