defmodule ClusterScope.Cluster.ScaleTest do
  # Twelve real peers: the same healthy classification everywhere, a cut
  # detected and classified on every node, and heartbeat traffic per node
  # within a bound that the old gossip (every beat carrying up to 64 views
  # of N - 1 entries: 46 kB/s and 840 bytes a message per node at 12 nodes)
  # broke several times over.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag :chaos
  @moduletag timeout: 180_000

  # bench/heartbeat_scale.exs measured ~5 kB/s and ~90 bytes a message per
  # node at 12 nodes; these bounds are generous (a shared 2-core machine,
  # global's and pg's own traffic), yet far under what the old gossip sent.
  @max_bytes_per_s 15_000
  @max_bytes_per_msg 200

  {:module, probe, probe_bin, _} =
    defmodule Probe do
      @moduledoc false
      # {send_oct, send_cnt} over the distribution sockets to other peers.
      def dist(exclude) do
        for {node, ctrl} <- :erlang.system_info(:dist_ctrl),
            node != exclude,
            is_port(ctrl),
            reduce: {0, 0} do
          {oct, cnt} ->
            case :inet.getstat(ctrl, [:send_oct, :send_cnt]) do
              {:ok, s} -> {oct + s[:send_oct], cnt + s[:send_cnt]}
              _ -> {oct, cnt}
            end
        end
      end
    end

  @probe probe
  @probe_bin probe_bin

  defp names(peers), do: peers |> Enum.map(&Atom.to_string(&1.node)) |> Enum.sort()

  defp partition_status(peer) do
    {:ok, data} = LocalCluster.call(peer, ClusterScope, :run, ["partition_status", %{}], 5_000)
    data
  end

  defp await_all(peers, fun, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout

    for p <- peers do
      Cluster.await_run(p, "partition_status", fun, max(deadline - now(), 100)) ||
        flunk("#{p.node} never got there: #{inspect(partition_status(p).classification)}")
    end
  end

  defp now, do: System.monotonic_time(:millisecond)

  test "12 peers: one healthy classification everywhere, a cut classified on every node, bounded traffic" do
    peers = Cluster.start(12)
    n = length(peers)
    all = names(peers)

    # Healthy everywhere, each node hearing the 11 others, and each node's
    # matrix is the full 12 x 12 of reachable pairs.
    await_all(
      peers,
      fn d ->
        d.classification.status == :healthy and map_size(d.heartbeat.peers) == n - 1 and
          Enum.sort(Map.keys(d.matrix)) == all and
          Enum.all?(d.matrix, fn {_, row} -> Enum.all?(row, fn {_, r} -> r == :reachable end) end)
      end,
      30_000
    )

    # Traffic, idle: bytes sent per second and per message on the
    # distribution sockets between peers (this node's link excluded).
    for p <- peers do
      assert {:module, @probe} =
               LocalCluster.call(p, :code, :load_binary, [@probe, ~c"nofile", @probe_bin])
    end

    sample = fn -> Map.new(peers, &{&1.node, LocalCluster.call(&1, @probe, :dist, [node()])}) end
    t0 = now()
    before = sample.()
    Process.sleep(5_000)
    after_ = sample.()
    seconds = (now() - t0) / 1_000

    for p <- peers do
      {oct0, cnt0} = before[p.node]
      {oct1, cnt1} = after_[p.node]
      per_s = (oct1 - oct0) / seconds
      per_msg = (oct1 - oct0) / max(cnt1 - cnt0, 1)
      # A node that sent nothing is not heartbeating at all.
      assert cnt1 - cnt0 >= 11 * 5 * 3, "#{p.node} sent only #{cnt1 - cnt0} messages"

      assert per_s <= @max_bytes_per_s,
             "#{p.node} sent #{round(per_s)} B/s (bound #{@max_bytes_per_s})"

      assert per_msg <= @max_bytes_per_msg,
             "#{p.node}: #{round(per_msg)} bytes a message (bound #{@max_bytes_per_msg})"
    end

    # One node cut off from the eleven others: every node classifies the
    # split, the eleven on the majority side, the twelfth alone.
    [x | rest] = peers
    Cluster.cut_all(for p <- rest, do: {p, x})
    majority = names(rest)

    split? = fn side ->
      fn d ->
        c = d.classification

        c.status == :split and c.side == side and
          Enum.sort(Enum.map(c.components, &Enum.sort/1)) == Enum.sort([majority, names([x])])
      end
    end

    await_all(rest, split?.(:majority), 10_000)
    # (It may first see itself on a minority side with a peer it has not
    # yet found cut: the test waits for the settled view, alone.)
    alone? = fn d ->
      c = d.classification
      c.side == :minority and Enum.at(c.components, c.self_component) == names([x])
    end

    c_x = Cluster.await_run(x, "partition_status", alone?, 10_000)
    assert c_x, "the cut node never saw itself alone on the minority side"
    assert c_x.classification.status == :split
  end
end
