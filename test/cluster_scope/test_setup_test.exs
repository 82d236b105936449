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

  test "an optional integration is included exactly when its module is loadable" do
    loadable = fn module -> module == Loadable end

    assert Setup.optional(@base, [arsenal: Loadable], loadable) == {@base, []}

    assert {[:arsenal | @base], [notice]} = Setup.optional(@base, [arsenal: Missing], loadable)
    assert notice =~ ":arsenal" and notice =~ "Missing"

    # The real check: a module of this VM, and one that is nowhere.
    assert {@base, []} = Setup.optional(@base, arsenal: ClusterScope.Arsenal)
    assert {[:arsenal | @base], _} = Setup.optional(@base, arsenal: Nowhere.To.Be.Found)
  end

  test ":browser: included when chromium, node and playwright-core are here; CI halts when not" do
    assert Setup.browser(@base, true, :ok) == {:run, [:bench], []}
    assert Setup.browser(@base, false, :ok) == {:run, [:bench], []}

    assert {:run, exclude, [notice]} = Setup.browser([:bench], false, {:error, "no chromium"})
    assert :browser in exclude
    assert notice =~ "Skipping :browser tests: no chromium"

    assert {:halt, message} = Setup.browser(@base, true, {:error, "/usr/bin/chromium is missing"})
    assert message =~ ":browser"
    assert message =~ "/usr/bin/chromium is missing"
  end
end
