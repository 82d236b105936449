defmodule ClusterScope.Health.ThrottleTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Health.Throttle

  @inputs %{
    interval: 1_000,
    base_interval: 1_000,
    max_interval: 16_000,
    budget: 0.01,
    typical_us: 400,
    collectors_fraction: 0.001,
    load: nil
  }

  describe "load_reason/2" do
    test "run queue above 2 per online scheduler, then utilisation above 90%" do
      assert Throttle.load_reason(%{run_queue: 5, online: 2}, 10.0) == :run_queue
      assert Throttle.load_reason(%{run_queue: 4, online: 2}, 10.0) == nil
      assert Throttle.load_reason(%{run_queue: 0, online: 2}, 90.5) == :scheduler_utilization
      assert Throttle.load_reason(%{run_queue: 0, online: 2}, 90.0) == nil
      assert Throttle.load_reason(%{run_queue: 0, online: 2}, nil) == nil
      assert Throttle.load_reason(%{run_queue: 9, online: 2}, 99.0) == :run_queue
    end
  end

  describe "step/2" do
    test "nothing to do when neither load nor cost" do
      assert Throttle.step(Throttle.initial(), @inputs) == {Throttle.initial(), 1_000, :keep}
    end

    test "load stops the collectors first, then doubles the interval up to the maximum" do
      loaded = %{@inputs | load: :run_queue}
      {t1, 1_000, :stop_collectors} = Throttle.step(Throttle.initial(), loaded)
      assert t1 == %{collectors_throttled: true, reason: :run_queue}

      {t2, 2_000, :keep} = Throttle.step(t1, loaded)
      {t3, 4_000, :keep} = Throttle.step(t2, %{loaded | interval: 2_000})
      assert t3.collectors_throttled
      assert {_, 16_000, :keep} = Throttle.step(t3, %{loaded | interval: 16_000})
      assert {_, 16_000, :keep} = Throttle.step(t3, %{loaded | interval: 10_000})
    end

    test "without load the interval halves back to the configured one, then collectors resume" do
      t = %{collectors_throttled: true, reason: :run_queue}
      {t, 4_000, :keep} = Throttle.step(t, %{@inputs | interval: 8_000})
      {t, 2_000, :keep} = Throttle.step(t, %{@inputs | interval: 4_000})
      {t, 1_000, :keep} = Throttle.step(t, %{@inputs | interval: 2_000})
      assert t.collectors_throttled
      # 400 us per 1 s = 0.0004 <= budget / 2: the collectors resume.
      assert {%{collectors_throttled: false, reason: nil}, 1_000, :keep} =
               Throttle.step(t, @inputs)
    end

    test "collectors stay stopped while the sample cost is above half the budget" do
      t = %{collectors_throttled: true, reason: :own_cost}
      # 6 ms per 1 s = 0.006: under the budget, over half of it.
      assert {%{collectors_throttled: true, reason: :own_cost}, 1_000, :keep} =
               Throttle.step(t, %{@inputs | typical_us: 6_000})
    end

    test "own cost: collectors' cost alone stops them but does not move the interval" do
      inputs = %{@inputs | collectors_fraction: 0.02}
      {t, 1_000, :stop_collectors} = Throttle.step(Throttle.initial(), inputs)
      assert t.reason == :own_cost
      # With the collectors stopped their fraction no longer counts.
      assert {%{collectors_throttled: false}, 1_000, :keep} = Throttle.step(t, inputs)
    end

    test "own cost from the sample itself lengthens the interval" do
      inputs = %{@inputs | typical_us: 20_000}
      {t, 1_000, :stop_collectors} = Throttle.step(Throttle.initial(), inputs)
      assert {%{reason: :own_cost}, 2_000, :keep} = Throttle.step(t, inputs)
    end
  end

  test "fractions, period and window" do
    assert Throttle.sample_fraction(nil, 1_000) == 0.0
    assert Throttle.sample_fraction(500, 1_000) == 0.0005
    assert Throttle.collectors_fraction(nil, 10_000) == 0.0
    assert Throttle.collectors_fraction(30_000, 10_000) == 0.003
    assert Throttle.collectors_fraction(30_000, 0) == 0.0
    # A 30 ms scan with a 1% budget waits 30 / 0.005 = 6 s, the minimum is 10 s.
    assert Throttle.collector_period(10_000, 30_000, 0.01) == 10_000
    assert Throttle.collector_period(1_000, 30_000, 0.01) == 6_000
    assert Throttle.cost_window([1, 2, 3, 4, 5], 9, false) == [9, 1, 2, 3, 4]
    assert Throttle.cost_window([1, 2], 9, true) == [1, 2]
    assert Throttle.median([]) == nil
    assert Throttle.median([5, 1, 3]) == 3
    assert Throttle.median([4, 1, 3, 2]) == 3
  end
end
