defmodule ClusterScope.PartitionNativeTest do
  # The partition NIFs called directly: phi-accrual detectors fed with
  # synthetic timestamps, and connectivity matrices for every scenario the
  # classifier knows. The rules themselves are tested in the Rust core; this
  # checks the term conversion, the atoms and that bad input never raises.
  use ExUnit.Case, async: true

  alias ClusterScope.Native

  @defaults [200, 50.0, 200.0, 150.0, 10_000]

  defp detectors(args \\ @defaults) do
    assert {:ok, ref} = apply(Native, :phi_new, args)
    assert is_reference(ref)
    ref
  end

  # Heartbeats from `peer` every `interval` ms, `count` of them from `start`;
  # returns the time of the last one.
  defp beat(ref, peer, start, interval, count) do
    Enum.reduce(0..(count - 1), nil, fn i, _ ->
      t = start + i * interval
      assert Native.phi_heartbeat(ref, peer, t) == :ok
      t
    end)
  end

  # -- observations -----------------------------------------------------------

  defp names(n), do: for(i <- 0..(n - 1), do: "n#{i}@127.0.0.#{i + 1}")

  defp healthy(n, me) do
    %{
      nodes: names(n),
      self_index: me,
      reach: List.duplicate(List.duplicate(:reachable, n), n),
      connected: List.duplicate(true, n),
      down: List.duplicate(false, n),
      net_loss: List.duplicate(false, n),
      quorum: nil
    }
  end

  defp put_reach(obs, i, j, value) do
    %{obs | reach: List.update_at(obs.reach, i, &List.replace_at(&1, j, value))}
  end

  defp put_flag(obs, key, j, value), do: Map.update!(obs, key, &List.replace_at(&1, j, value))

  # No recent view from node i.
  defp unknown_row(obs, i) do
    n = length(obs.nodes)
    %{obs | reach: List.replace_at(obs.reach, i, List.duplicate(:unknown, n))}
  end

  # Every node whose row is known says j is unreachable; j's row is unknown.
  defp silent(obs, j) do
    reach =
      obs.reach
      |> Enum.with_index()
      |> Enum.map(fn {row, i} ->
        if i != j and Enum.at(row, j) != :unknown,
          do: List.replace_at(row, j, :unreachable),
          else: row
      end)

    unknown_row(%{obs | reach: reach}, j)
  end

  # A clean partition into `groups` seen from `me`: the other groups' rows
  # unknown, this side says they are unreachable, their connections lose data.
  defp partition(groups, me) do
    n = groups |> List.flatten() |> length()
    mine = Enum.find(groups, &(me in &1))
    others = Enum.to_list(0..(n - 1)) -- mine
    obs = healthy(n, me)

    obs =
      Enum.reduce(others, obs, fn j, acc ->
        acc |> unknown_row(j) |> put_flag(:net_loss, j, true)
      end)

    for i <- mine, j <- others, reduce: obs do
      acc -> put_reach(acc, i, j, :unreachable)
    end
  end

  defp classify!(obs) do
    assert {:ok, c} = Native.partition_classify(obs)
    c
  end

  defp invalid(result) do
    assert {:error, {:invalid_observation, message}} = result
    assert is_binary(message)
    message
  end

  describe "phi detectors" do
    test "regular heartbeats keep phi low, silence raises it" do
      ref = detectors()
      last = beat(ref, "a@host", 1_000.0, 100.0, 200)

      assert Native.phi_get(ref, "a@host", last + 100.0) < 0.01
      assert Native.phi_get(ref, "a@host", last + 300.0) < 1.0
      assert Native.phi_get(ref, "a@host", last + 1_000.0) > 12.0

      phis = for ms <- 0..2_000//50, do: Native.phi_get(ref, "a@host", last + ms)
      assert phis == Enum.sort(phis)
      assert Enum.all?(phis, &(is_float(&1) and &1 >= 0.0))
    end

    test "phi crosses 8 after 562 ms of silence at 100 ms heartbeats with the defaults" do
      ref = detectors()
      last = beat(ref, "a@host", 0.0, 100.0, 500)
      crossing = Enum.find(0..2_000, &(Native.phi_get(ref, "a@host", last + &1) >= 8.0))
      assert crossing == 562
    end

    test "jitter of +/-30 ms raises no suspicion" do
      ref = detectors()
      :rand.seed(:exsss, {1, 2, 3})

      {worst, _} =
        Enum.reduce(1..2_000, {0.0, 0.0}, fn _, {worst, t} ->
          :ok = Native.phi_heartbeat(ref, "a@host", t)
          next = t + 100 + :rand.uniform(61) - 31
          {max(worst, Native.phi_get(ref, "a@host", next)), next}
        end)

      assert worst < 0.1
    end

    test "phi is low right after the first heartbeat (seeded history), nil for unknown peers" do
      ref = detectors()
      assert Native.phi_get(ref, "a@host", 0.0) == nil
      assert Native.phi_heartbeat(ref, "a@host", 5_000) == :ok
      assert Native.phi_get(ref, "a@host", 5_000) < 0.01
      assert [%{samples: 2, mean_ms: 150.0, std_dev_ms: 37.5}] = Native.phi_all(ref, 5_000)
    end

    test "phi_all lists every peer, sorted, with its statistics" do
      ref = detectors()
      beat(ref, "b@host", 0, 100, 20)
      last = beat(ref, "a@host", 0, 200, 20)
      # Integer and float timestamps mix; atoms name peers as well.
      :ok = Native.phi_heartbeat(ref, :c@host, 1_000)

      assert [a, b, c] = Native.phi_all(ref, last + 10.0)
      assert Native.phi_all_dirty(ref, last + 10.0) == [a, b, c]

      assert %{
               peer: "a@host",
               phi: phi_a,
               last_heartbeat_ms: 3_800.0,
               samples: 21,
               mean_ms: mean_a,
               std_dev_ms: std_a
             } = a

      assert is_float(phi_a) and is_float(mean_a) and is_float(std_a)
      assert %{peer: "b@host", last_heartbeat_ms: 1_900.0} = b
      # b has been silent for 1.9 s after beating every 100 ms.
      assert b.phi > 8.0
      assert %{peer: "c@host", samples: 2} = c
    end

    test "remove forgets a peer and is idempotent" do
      ref = detectors()
      beat(ref, "a@host", 0, 100, 5)
      assert Native.phi_remove(ref, "a@host") == :ok
      assert Native.phi_remove(ref, "a@host") == :ok
      assert Native.phi_get(ref, "a@host", 1_000) == nil
      assert Native.phi_all(ref, 1_000) == []
    end

    test "new peers are refused past max_peers" do
      ref = detectors([200, 50.0, 200.0, 150.0, 2])
      :ok = Native.phi_heartbeat(ref, "a", 0)
      :ok = Native.phi_heartbeat(ref, "b", 0)
      assert {:error, {:too_many_peers, message}} = Native.phi_heartbeat(ref, "c", 0)
      assert message =~ "max_peers"
      assert Native.phi_heartbeat(ref, "a", 100) == :ok
      :ok = Native.phi_remove(ref, "b")
      assert Native.phi_heartbeat(ref, "c", 100) == :ok
    end

    test "bad settings are refused, naming the setting" do
      for {args, field} <- [
            {[0, 50.0, 200.0, 150.0, 10], "window"},
            {[-1, 50.0, 200.0, 150.0, 10], "window"},
            {[1.5, 50.0, 200.0, 150.0, 10], "window"},
            {[200, 0.0, 200.0, 150.0, 10], "min_std_dev_ms"},
            {[200, "50", 200.0, 150.0, 10], "min_std_dev_ms"},
            {[200, 50.0, -1, 150.0, 10], "acceptable_pause_ms"},
            {[200, 50.0, 200.0, 0, 10], "first_interval_estimate_ms"},
            {[200, 50.0, 200.0, 150.0, 0], "max_peers"},
            {[200, 50.0, 200.0, 150.0, 10 ** 30], "max_peers"}
          ] do
        assert {:error, {:invalid_config, message}} = apply(Native, :phi_new, args)
        assert message =~ field, "#{inspect(args)}: #{message}"
      end
    end

    test "bad arguments are refused, never raised" do
      ref = detectors()

      assert {:error, {:invalid_argument, "detectors:" <> _}} =
               Native.phi_heartbeat(make_ref(), "a", 0)

      assert {:error, {:invalid_argument, "peer:" <> _}} = Native.phi_heartbeat(ref, 42, 0)
      assert {:error, {:invalid_argument, "peer:" <> _}} = Native.phi_heartbeat(ref, <<0xFF>>, 0)
      assert {:error, {:invalid_argument, "now_ms:" <> _}} = Native.phi_heartbeat(ref, "a", :now)

      assert {:error, {:invalid_argument, "peer:" <> _}} =
               Native.phi_heartbeat(ref, String.duplicate("x", 1_025), 0)

      assert {:error, {:invalid_argument, _}} = Native.phi_all(:not_a_ref, 0)
      assert {:error, {:invalid_argument, _}} = Native.phi_get(ref, "a", "later")
      assert {:error, {:invalid_argument, _}} = Native.phi_remove(ref, {:a})
      assert Native.phi_all(ref, 0) == []
    end
  end

  describe "classification scenarios" do
    test "healthy, five nodes" do
      assert %{
               status: :healthy,
               anomalies: [],
               components: [[0, 1, 2, 3, 4]],
               self_component: 0,
               side: :majority,
               down: [],
               frozen: [],
               unobserved: [],
               one_way: [],
               indirect: [],
               unreachable_pairs: [],
               unreachable_pair_count: 0,
               truncated: false
             } = classify!(healthy(5, 2))
    end

    test "one node crashed" do
      obs =
        healthy(5, 0)
        |> silent(3)
        |> put_flag(:down, 3, true)
        |> put_flag(:connected, 3, false)

      c = classify!(obs)
      assert c.status == :node_down
      assert c.down == [3]
      assert c.components == [[0, 1, 2, 4], [3]]
      assert c.side == :majority
      assert c.unreachable_pairs == [{0, 3}, {1, 3}, {2, 3}, {3, 4}]
    end

    test "one node frozen: silent with its connection up and no loss" do
      c = classify!(healthy(5, 1) |> silent(4))
      assert c.status == :frozen
      assert c.frozen == [4]
      assert c.components == [[0, 1, 2, 3], [4]]
    end

    test "one node cut off completely, with net_loss, is a split" do
      obs = healthy(5, 0) |> silent(4) |> put_flag(:net_loss, 4, true)
      c = classify!(obs)
      assert c.status == :split
      assert c.frozen == []
      assert c.components == [[0, 1, 2, 3], [4]]
      assert c.side == :majority
    end

    test "clean 2-2 split, from both sides" do
      for me <- 0..3 do
        c = classify!(partition([[0, 1], [2, 3]], me))
        assert c.status == :split
        assert c.components == [[0, 1], [2, 3]]
        assert c.self_component == div(me, 2)
        assert c.side == :tie
      end
    end

    test "3-2 split from the majority and the minority side" do
      for me <- [0, 2, 4] do
        c = classify!(partition([[0, 2, 4], [1, 3]], me))
        assert {c.status, c.side, c.self_component} == {:split, :majority, 0}
        assert c.components == [[0, 2, 4], [1, 3]]
      end

      for me <- [1, 3] do
        c = classify!(partition([[0, 2, 4], [1, 3]], me))
        assert {c.status, c.side, c.self_component} == {:split, :minority, 1}
      end
    end

    test "tie in a 3-3 split" do
      c = classify!(partition([[0, 1, 2], [3, 4, 5]], 5))
      assert {c.status, c.side} == {:split, :tie}
      assert c.components == [[0, 1, 2], [3, 4, 5]]
    end

    test "static quorum decides the side" do
      majority = partition([[0, 1, 2], [3, 4]], 0)
      minority = partition([[0, 1, 2], [3, 4]], 4)
      assert classify!(%{majority | quorum: 3}).side == :majority
      assert classify!(%{minority | quorum: 3}).side == :minority
      assert classify!(%{majority | quorum: 4}).side == :minority
      assert classify!(%{minority | quorum: 2}).side == :majority
      # quorum is optional: without the key, more than half is the majority.
      assert classify!(Map.delete(minority, :quorum)).side == :minority
    end

    test "one-way reachability in three nodes" do
      c = classify!(healthy(3, 2) |> put_reach(0, 1, :unreachable))
      assert c.status == :one_way
      assert c.one_way == [{0, 1}]
      assert c.components == [[0, 1, 2]]
    end

    test "indirect: a single cut link in a three-node mesh" do
      obs = healthy(3, 0) |> put_reach(0, 1, :unreachable) |> put_reach(1, 0, :unreachable)
      c = classify!(obs)
      assert c.status == :indirect
      assert c.indirect == [{0, 1, [2]}]
      assert c.components == [[0, 1, 2]]

      # Seen from node 0, which has no row from 1.
      c = classify!(obs |> unknown_row(1))
      assert c.indirect == [{0, 1, [2]}]
    end

    test "mixed anomalies are all listed" do
      obs =
        healthy(6, 0)
        |> silent(5)
        |> put_flag(:down, 5, true)
        |> silent(4)
        |> put_reach(1, 2, :unreachable)
        |> put_reach(2, 1, :unreachable)

      c = classify!(obs)
      assert c.status == :mixed
      assert c.anomalies == [:node_down, :frozen, :indirect]
      assert {c.down, c.frozen} == {[5], [4]}
      assert c.indirect == [{1, 2, [0, 3]}]
    end

    test "unobserved nodes are listed but no anomaly" do
      obs =
        healthy(3, 0) |> unknown_row(2) |> put_reach(0, 2, :unknown) |> put_reach(1, 2, :unknown)

      c = classify!(obs)
      assert c.status == :healthy
      assert c.unobserved == [2]
    end

    test "the dirty variant answers the same" do
      obs = partition([[0, 1, 2], [3, 4]], 3)
      assert Native.partition_classify_dirty(obs) == Native.partition_classify(obs)
    end

    test "heals by name" do
      prev = partition([[0, 1, 2], [3, 4]], 0)
      next = healthy(5, 0) |> silent(3) |> put_flag(:net_loss, 3, true)

      assert Native.partition_heals(prev, next) ==
               {:ok,
                [
                  {"n0@127.0.0.1", "n4@127.0.0.5"},
                  {"n1@127.0.0.2", "n4@127.0.0.5"},
                  {"n2@127.0.0.3", "n4@127.0.0.5"}
                ]}

      assert Native.partition_heals_dirty(prev, next) == Native.partition_heals(prev, next)
      assert Native.partition_heals(prev, prev) == {:ok, []}

      # Node lists may differ: pairs follow the names.
      next = %{healthy(2, 0) | nodes: ["n4@127.0.0.5", "n1@127.0.0.2"]}
      assert Native.partition_heals(prev, next) == {:ok, [{"n1@127.0.0.2", "n4@127.0.0.5"}]}
    end
  end

  describe "bad observations" do
    test "a ragged matrix names the row" do
      obs = healthy(3, 0)
      obs = %{obs | reach: List.update_at(obs.reach, 1, &tl/1)}
      message = invalid(Native.partition_classify(obs))
      assert message =~ "reach[1]"
      assert message =~ "expected 3"
    end

    test "a bad reach atom names the entry" do
      message = invalid(Native.partition_classify(put_reach(healthy(3, 0), 0, 2, :maybe)))
      assert message =~ "reach[0][2]"
      assert message =~ ":reachable"
      message = invalid(Native.partition_classify(put_reach(healthy(3, 0), 2, 1, "reachable")))
      assert message =~ "reach[2][1]"
    end

    test "self_index out of range" do
      assert invalid(Native.partition_classify(%{healthy(3, 0) | self_index: 3})) =~ "self_index"
      assert invalid(Native.partition_classify(%{healthy(3, 0) | self_index: -1})) =~ "self_index"

      assert invalid(Native.partition_classify(%{healthy(3, 0) | self_index: 10 ** 30})) =~
               "self_index"
    end

    test "every field is checked, never raising" do
      base = healthy(3, 0)

      cases = [
        {:not_a_map, "observation"},
        {Map.delete(base, :nodes), "nodes"},
        {Map.delete(base, :reach), "reach"},
        {Map.delete(base, :connected), "connected"},
        {%{base | nodes: ["a", "b", 3]}, "nodes[2]"},
        {%{base | nodes: ["a", "a", "b"]}, "nodes[1]"},
        {%{base | nodes: []}, "nodes"},
        {%{base | nodes: [<<0xFF>>, "b", "c"]}, "nodes[0]"},
        {%{base | nodes: ["a", "b" | "c"]}, "nodes"},
        {%{base | reach: tl(base.reach)}, "reach"},
        {%{base | reach: :all}, "reach"},
        {%{base | reach: [[:reachable, :reachable | :reachable] | tl(base.reach)]}, "reach[0]"},
        {%{base | connected: [true, false]}, "connected"},
        {%{base | down: [true, false, :yes]}, "down[2]"},
        {%{base | net_loss: [1, 2, 3]}, "net_loss[0]"},
        {%{base | quorum: 0}, "quorum"},
        {%{base | quorum: -2}, "quorum"},
        {%{base | quorum: "two"}, "quorum"}
      ]

      for {obs, field} <- cases do
        message = invalid(Native.partition_classify(obs))
        assert message =~ field, "#{inspect(obs)}: #{message}"
        assert invalid(Native.partition_classify_dirty(obs)) == message
      end
    end

    test "heals names the bad picture" do
      good = healthy(3, 0)
      bad = %{good | self_index: 7}
      assert invalid(Native.partition_heals(good, bad)) =~ "next.self_index"
      assert invalid(Native.partition_heals(bad, good)) =~ "prev.self_index"
      assert invalid(Native.partition_heals(good, :nope)) =~ "next"
    end

    test "too many nodes are refused before the matrix is read" do
      nodes = for i <- 1..5_001, do: "n#{i}"
      obs = %{healthy(1, 0) | nodes: nodes}
      assert invalid(Native.partition_classify_dirty(obs)) =~ "over the limit"
    end
  end

  test "a 1,000-node healthy matrix classifies quickly on the dirty NIF" do
    obs = healthy(1_000, 17)
    # Warm the code path, then time the call alone.
    {:ok, _} = Native.partition_classify_dirty(obs)
    {micros, {:ok, c}} = :timer.tc(fn -> Native.partition_classify_dirty(obs) end)
    assert c.status == :healthy
    assert c.components == [Enum.to_list(0..999)]
    assert c.side == :majority
    # Decoding a million atoms plus the core; generous for loaded CI hosts.
    assert micros < 500_000, "took #{micros} us"
  end
end
