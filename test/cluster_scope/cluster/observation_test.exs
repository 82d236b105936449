defmodule ClusterScope.Cluster.ObservationTest do
  # The pure parts of the cluster state: the matrix built from views, and the
  # classifier called on a dirty scheduler past the size where it could
  # pass 1 ms.
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.Observation
  alias ClusterScope.Native

  defp healthy(n) do
    names = for i <- 1..n, do: "n#{i}@127.0.0.9"

    %{
      nodes: names,
      self_index: 0,
      reach: for(_ <- names, do: for(_ <- names, do: :reachable)),
      connected: for(_ <- names, do: true),
      down: for(_ <- names, do: false),
      net_loss: for(_ <- names, do: false),
      quorum: nil
    }
  end

  test "small matrices classify on a normal scheduler; past 200 nodes the NIF sends the call to its dirty twin" do
    assert {:ok, %{status: :healthy}} = Native.partition_classify(healthy(200))
    assert Native.partition_classify(healthy(201)) == :use_dirty
    assert Native.partition_heals(healthy(201), healthy(3)) == :use_dirty
    assert Native.partition_heals(healthy(3), healthy(201)) == :use_dirty
    assert {:ok, []} = Native.partition_heals_dirty(healthy(201), healthy(201))

    # The caller takes the dirty path and gets the same answer.
    assert {:ok, small} = Observation.classify(healthy(10))
    assert small.status == :healthy
    assert {:ok, large} = Observation.classify(healthy(250))
    assert large.status == :healthy
    assert large.components == [Enum.to_list(0..249)]

    # Malformed input still gets the error naming the field, not :use_dirty.
    assert {:error, {:invalid_observation, detail}} =
             Native.partition_classify(%{healthy(3) | reach: :nope})

    assert detail =~ "reach"
  end

  test "phi_all past 2,000 peers answers :use_dirty; its dirty twin reads them all" do
    {:ok, ref} = Native.phi_new(200, 50.0, 200.0, 200.0, 10_000)
    for i <- 1..2_000, do: :ok = Native.phi_heartbeat(ref, "p#{i}@h", 1_000)
    assert length(Native.phi_all(ref, 1_100)) == 2_000
    :ok = Native.phi_heartbeat(ref, "p2001@h", 1_000)
    assert Native.phi_all(ref, 1_100) == :use_dirty
    assert length(Native.phi_all_dirty(ref, 1_100)) == 2_001
  end

  test "the matrix: fresh views give their rows, a stale one reads unknown, self cut-off members unreachable" do
    me = node()
    [a, b, gone] = [:"a@127.0.0.9", :"b@127.0.0.9", :"gone@127.0.0.9"]
    now = 10_000
    fresh = fn view -> %{version: 1, cv: 1, at_ms: now - 100, view: view} end

    up = %{status: :up}

    state = %{
      interval: 200,
      quorum: nil,
      delayed: %{},
      members: MapSet.new([me, a, b, gone]),
      nodes: %{
        me => up,
        a => up,
        b => up,
        gone => %{status: :down, down_reason: :net_tick_timeout, down_attribution: :erlang}
      },
      views: %{
        me => fresh.(%{a => :reachable, b => :reachable}),
        a => fresh.(%{me => :reachable, b => :reachable}),
        b => %{version: 1, cv: 1, at_ms: now - 5_000, view: %{me => :reachable}}
      }
    }

    obs = Observation.build(state, [me, a, b], [a, b], now, fn -> %{} end)
    assert obs.node_atoms == Enum.sort([me, a, b, gone])
    matrix = Observation.matrix(obs)
    name = &Atom.to_string/1
    assert matrix[name.(me)][name.(a)] == :reachable
    assert matrix[name.(me)][name.(gone)] == :unreachable
    assert matrix[name.(a)][name.(b)] == :reachable
    # b's view is stale: its row is unknown, whatever it said.
    assert matrix[name.(b)][name.(me)] == :unknown
    assert MapSet.member?(Observation.cut_pairs(obs), Enum.min_max([name.(me), name.(gone)]))
  end
end
