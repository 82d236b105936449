defmodule ClusterScope.Cluster.GlobalAttributionTest do
  # The links `global` cuts to prevent overlapping partitions are attributed
  # whatever the logger's level: production nodes often log at :error, where
  # global's warning never reaches a handler.
  use ExUnit.Case, async: false

  alias ClusterScope.Cluster.{GlobalWatcher, State}
  alias ClusterScope.Test.Cluster

  @moduletag timeout: 120_000

  @mfa {:global, :handle_nodedown, 3}

  defp meta_tracer do
    {:meta, tracer} = :erlang.trace_info(@mfa, :meta)
    tracer
  end

  # The state checks its pattern every few seconds; this makes it check now.
  defp check_now do
    send(State, :global_watch)
    _ = :sys.get_state(State)
    :ok
  end

  test "the state watches global's cuts, takes the watch back, and never steals it" do
    check_now()
    assert meta_tracer() == Process.whereis(State)

    # Cleared (dbg:ctp/0 does that, a reload of global too): back at the next check.
    :erlang.trace_pattern(@mfa, false, [:meta])
    assert meta_tracer() == false
    check_now()
    assert meta_tracer() == Process.whereis(State)

    # Another meta tracer on it (a user's trace session) is left alone.
    other = spawn(fn -> Process.sleep(:infinity) end)
    :erlang.trace_pattern(@mfa, true, [{:meta, other}])

    try do
      check_now()
      assert meta_tracer() == other
    after
      Process.exit(other, :kill)
    end

    # Its tracer gone, the state takes it back.
    ref = Process.monitor(other)
    assert_receive {:DOWN, ^ref, :process, ^other, _}
    check_now()
    assert meta_tracer() == Process.whereis(State)

    # Only its owner removes it (the state does when it stops).
    assert GlobalWatcher.unwatch(self()) == :ok
    assert meta_tracer() == Process.whereis(State)
    assert GlobalWatcher.unwatch(Process.whereis(State)) == :ok
    assert meta_tracer() == false
    check_now()
    assert meta_tracer() == Process.whereis(State)
  end

  test "a call of global's remove_connection is a cut; other nodedowns are not" do
    ghost = :"ghost_cut@127.0.0.9"

    msg =
      {:trace_ts, self(), :call, {:global, :handle_nodedown, [ghost, :state, :remove_connection]},
       {1, 2, 3}}

    assert GlobalWatcher.cut(msg) == {:ok, ghost}

    for other <- [
          {:trace_ts, self(), :call, {:global, :handle_nodedown, [ghost, :state, :disconnected]},
           {1, 2, 3}},
          {:trace, self(), :call, {:global, :other, [ghost]}},
          {:trace_ts, self(), :call,
           {:global, :handle_nodedown, [node(), :s, :remove_connection]}, {1, 2, 3}},
          :garbage
        ] do
      assert GlobalWatcher.cut(other) == :ignore
    end

    send(State, msg)
    assert Map.has_key?(:sys.get_state(State).global_cuts, ghost)
  end

  @tag :cluster
  test "global's cut is attributed on both sides with the logger at :error" do
    [a, b] = peers = Cluster.start(2)
    levels = Map.new(peers, &{&1.node, Cluster.call(&1, :logger, :get_primary_config, []).level})

    for p <- peers do
      :ok = Cluster.call(p, :logger, :set_primary_config, [:level, :error])
      # Global has synchronised with the other node (it only cuts known nodes).
      :ok = Cluster.call(p, :global, :sync, [])
    end

    marks = Map.new(peers, &{&1.node, Cluster.last_cluster_event(&1)})

    # What global receives when another node reports that it lost its
    # connection to b (OTP 25+, prevent_overlapping_partitions): a asks b to
    # disconnect, b disconnects a. Each logs one warning, at a level that
    # is dropped here.
    lost = {:lost_connection, :"ghost_reporter@127.0.0.9", 1, 1, b.node}
    Cluster.call(a, :erlang, :send, [:global_name_server, lost])

    on_a =
      Cluster.await_cluster_event(a, &(&1.type == :down and &1.node == b.node),
        after: marks[a.node]
      )

    on_b =
      Cluster.await_cluster_event(b, &(&1.type == :down and &1.node == a.node),
        after: marks[b.node]
      )

    assert on_a.details.attribution == :global, inspect(on_a)
    assert on_b.details.attribution == :global, inspect(on_b)
    assert on_b.details.reason == :disconnect
    assert on_a.cause =~ "global"

    for p <- peers, do: Cluster.call(p, :logger, :set_primary_config, [:level, levels[p.node]])
  end
end
