defmodule ClusterScope.Test.Cluster do
  @moduledoc """
  Multi-node test harness on real peer nodes.

  Peers are started with `ClusterScope.LocalCluster` on their own loopback
  addresses (`127.0.0.2`, `127.0.0.3`, ...) and controlled through `:peer`'s
  standard I/O, never through distribution: after a partition cuts a node
  off, the test can still ask it what it sees.

  Faults are real: `kill/1` sends SIGKILL to the peer's OS process,
  `freeze/1` SIGSTOP, `resume/1` SIGCONT, and `cut/3` adds `iptables -j DROP`
  rules between two peers' addresses in a chain of its own
  (`CLUSTERSCOPE_TEST`), which `heal/2` and `heal_all/0` remove.
  """

  import ExUnit.Assertions

  alias ClusterScope.LocalCluster
  alias ClusterScope.LocalCluster.Peer
  alias ClusterScope.Test.NodeWatcher

  # Each test run (OS process) has its own chain and its own loopback range,
  # so two runs on one machine never cut each other's links.
  defp chain, do: "CS_TEST_#{System.pid()}"

  @doc "The first address of this run's loopback range (peers get the next ones)."
  def alias_base, do: {127, 10 + rem(String.to_integer(System.pid()), 200), 0, 1}

  @doc """
  Starts `count` peers on loopback aliases with ClusterScope started and a
  node watcher running, then connects them in a full mesh. The test node
  joins as a hidden observer (`observer: :visible` to make it a member).
  Registers cleanup with `ExUnit.Callbacks.on_exit/1`: peers are killed and
  the iptables rules removed whatever the test's outcome.
  """
  def start(count, opts \\ []) do
    opts =
      Keyword.merge(
        [aliases: true, alias_base: alias_base(), connection: :standard_io, link: false],
        opts
      )

    {:ok, peers} = LocalCluster.start_peers(count, Keyword.put(opts, :connect, false))
    ExUnit.Callbacks.on_exit(fn -> cleanup(peers) end)

    for peer <- peers do
      {:ok, _} = LocalCluster.call(peer, NodeWatcher, :start, [])
      {:ok, _} = LocalCluster.call(peer, NodeWatcher, :start_cluster_recorder, [])
    end

    if Keyword.get(opts, :connect, true) do
      observer = Keyword.get(opts, :observer, :hidden)
      :ok = LocalCluster.connect_mesh(peers, observer)
      settle_mesh(peers, observer)
    end

    peers
  end

  # `global` may drop links right after a mesh forms ("requested disconnect
  # ... to prevent overlapping partitions", seen on a slow CI machine): a
  # test then starts from a cluster that is already cut. The mesh counts as
  # settled once it is whole on two checks a quarter second apart.
  defp settle_mesh(peers, observer, timeout \\ 30_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    poll(deadline, fn ->
      LocalCluster.connect_mesh(peers, observer)
      mesh_whole?(peers) and Process.sleep(250) == :ok and mesh_whole?(peers)
    end) || flunk("the mesh of #{length(peers)} peers was not whole within #{timeout} ms")

    :ok
  end

  # Every peer connected to every other.
  defp mesh_whole?(peers) do
    nodes = Enum.map(peers, & &1.node)

    Enum.all?(peers, fn p ->
      connected = call(p, Node, :list, [])
      Enum.all?(nodes -- [p.node], &(&1 in connected))
    end)
  end

  @doc """
  Extra `erl` arguments for benchmark peers: `INTERVAL_MS=n` runs them with
  another heartbeat interval (to measure the trade between detection time
  and heartbeat cost).
  """
  def interval_args do
    case System.get_env("INTERVAL_MS") do
      nil -> []
      ms -> ["-cluster_scope", "heartbeat_interval_ms", ms]
    end
  end

  @doc """
  Starts a peer without ClusterScope (agentless) on this run's alias
  `.octet`, connected to the cluster through `via` only (one link; global
  meshes the rest: several at once can make global cut links to prevent
  overlapping partitions). Registers its cleanup.
  """
  def start_agentless(%Peer{} = via, octet) do
    {o1, o2, o3, _} = alias_base()

    {:ok, bare} =
      LocalCluster.start_peer(
        agent: false,
        connection: :standard_io,
        link: false,
        ip: {o1, o2, o3, octet}
      )

    ExUnit.Callbacks.on_exit(fn -> cleanup([bare]) end)
    assert connect(via, bare.node)
    bare
  end

  @doc "Kills every peer and removes every rule. Safe to call twice."
  def cleanup(peers) do
    if chaos_available?() == :ok, do: heal_all()

    for %Peer{os_pid: os_pid} <- peers do
      System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true)
      System.cmd("kill", ["-KILL", "#{os_pid}"], stderr_to_stdout: true)
    end

    forget(peers)
  end

  @doc """
  Makes this node's cluster state forget peers that are gone, once their
  connections have closed: a visible peer last seen silent (frozen, cut)
  would otherwise stay in its matrix as cut off for minutes and tilt every
  later test's view of the cluster.
  """
  def forget(peers) do
    if Process.whereis(ClusterScope.Cluster.State) do
      for %Peer{node: node} <- peers do
        poll(System.monotonic_time(:millisecond) + 5_000, fn ->
          ClusterScope.Cluster.State.forget(node) == :ok
        end)
      end
    end

    :ok
  end

  @doc """
  Makes this node's cluster state forget every node it knows that is not
  connected now (peers of earlier tests, whoever started them), for tests
  that assert on the health of the whole cluster as seen from here.
  """
  def forget_gone do
    if Process.whereis(ClusterScope.Cluster.State) do
      connected = [node() | Node.list(:connected)]

      for %{node: n} <- ClusterScope.Cluster.State.topology().nodes, n not in connected do
        ClusterScope.Cluster.State.forget(n)
      end
    end

    :ok
  end

  @doc """
  Sets a `:cluster_scope` option on the peer and reloads its configuration
  (what a host's config would have set at start).
  """
  def put_config(peer, key, value) do
    :ok = call(peer, Application, :put_env, [:cluster_scope, key, value])
    call(peer, ClusterScope.Config, :load, [])
    :ok
  end

  @doc "Calls a function on the peer over standard I/O."
  defdelegate call(peer, module, fun, args, timeout \\ 5_000), to: LocalCluster

  @doc "Stops the peer gracefully."
  defdelegate stop(peer), to: LocalCluster

  @doc "Kills the peer's OS process with SIGKILL."
  def kill(%Peer{os_pid: os_pid}), do: signal(os_pid, "KILL")

  @doc """
  Freezes the peer's OS process with SIGSTOP: it stays connected but silent.
  Returns once the kernel reports every thread of it stopped.
  """
  def freeze(%Peer{os_pid: os_pid}) do
    with :ok <- signal(os_pid, "STOP") do
      stopped? = fn ->
        case File.ls("/proc/#{os_pid}/task") do
          {:ok, tasks} -> Enum.all?(tasks, &(thread_state(os_pid, &1) in ["T", "t", nil]))
          _ -> true
        end
      end

      if poll(System.monotonic_time(:millisecond) + 2_000, stopped?),
        do: :ok,
        else: {:error, "the process did not stop"}
    end
  end

  # The state letter of /proc/PID/task/TID/stat (nil once the thread is gone).
  defp thread_state(os_pid, tid) do
    case File.read("/proc/#{os_pid}/task/#{tid}/stat") do
      {:ok, stat} -> stat |> String.split(") ", parts: 2) |> List.last() |> String.first()
      _ -> nil
    end
  end

  @doc "Resumes a frozen peer with SIGCONT."
  def resume(%Peer{os_pid: os_pid}), do: signal(os_pid, "CONT")

  @doc """
  Cuts the link between two peers: `:both` directions (default), or
  `:one_way`, where only traffic from `b` to `a` is dropped (`a` no longer
  hears `b`; `b` still hears `a`), or `:one_way_data`, where only `b`'s
  packets carrying data to `a` are dropped and its bare acknowledgements
  pass.

  Over a TCP connection (Erlang distribution), `:one_way` lasts about one
  retransmission timeout: `a`'s acknowledged window closes when `b`'s ACKs
  are lost, and `b` stops hearing `a` a few hundred ms later.
  `:one_way_data` keeps `a`'s data flowing to `b` until Erlang's tick
  timeout closes the connection.
  """
  def cut(%Peer{} = a, %Peer{} = b, direction \\ :both), do: cut_all([{a, b}], direction)

  @doc """
  Cuts every `{a, b}` link of `pairs` at once (one `iptables-restore`
  transaction), as a real partition happens: no intermediate state where
  some links of the partition are cut and others not.
  """
  def cut_all(pairs, direction \\ :both) do
    ensure_chain!()

    rules =
      Enum.flat_map(pairs, fn {a, b} ->
        case direction do
          :both -> [rule(b, a), rule(a, b)]
          :one_way -> [rule(b, a)]
          :one_way_data -> [data_rule(b, a)]
        end
      end)

    input =
      ["*filter\n", Enum.map(rules, &["-A ", chain(), " ", Enum.join(&1, " "), "\n"]), "COMMIT\n"]
      |> IO.iodata_to_binary()

    file = Path.join(System.tmp_dir!(), "cluster_scope_cut_#{System.unique_integer([:positive])}")
    File.write!(file, input)

    try do
      {out, status} =
        System.cmd("iptables-restore", ["-w", "--noflush", file], stderr_to_stdout: true)

      assert status == 0, "iptables-restore failed: #{out}"
    after
      File.rm(file)
    end

    :ok
  end

  @doc "Removes the rules between two peers, in both directions."
  def heal(%Peer{} = a, %Peer{} = b) do
    for {from, to} <- [{a, b}, {b, a}],
        r <- [rule(from, to), data_rule(from, to)],
        do: delete_all(r)

    :ok
  end

  @doc "Removes every rule this harness added."
  def heal_all do
    iptables(["-F", chain()])
    :ok
  end

  @doc "Removes this run's chain altogether (at the end of the run)."
  def remove_chain do
    iptables(["-F", chain()])
    delete_jumps()
    iptables(["-X", chain()])
    :ok
  end

  @doc """
  Removes the chains of runs that are gone (killed before they could clean
  up), so their rules cannot linger.
  """
  def remove_stale_chains do
    {out, _} = iptables(["-S"])

    for "-N CS_TEST_" <> pid <- String.split(out, "\n"),
        pid != System.pid(),
        not File.exists?("/proc/#{pid}") do
      chain = "CS_TEST_" <> pid
      iptables(["-F", chain])
      delete_jumps(chain)
      iptables(["-X", chain])
    end

    :ok
  end

  defp delete_jumps, do: delete_jumps(chain())

  defp delete_jumps(chain) do
    case iptables(["-D", "INPUT", "-j", chain]) do
      {_, 0} -> delete_jumps(chain)
      _ -> :ok
    end
  end

  @doc """
  Reconnects the full mesh of `peers` until it holds (Erlang or `global` may
  have dropped links during a fault; `global` may drop more while links come
  back). Returns `:ok` or fails after `timeout` ms.
  """
  def reconnect(peers, timeout \\ 20_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    poll(deadline, fn ->
      LocalCluster.connect_mesh(peers, :hidden)
      mesh_whole?(peers)
    end) || flunk("the mesh of #{length(peers)} peers did not come back within #{timeout} ms")

    :ok
  end

  @doc """
  Asks `peer` to connect to `target` through distribution, retrying for up to
  `timeout` ms (a node just resumed may still be tearing down its old
  connection). Returns whether the link is up.
  """
  def connect(%Peer{} = peer, target, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    poll(deadline, fn -> call(peer, :net_kernel, :connect_node, [node_of(target)], 15_000) end) ==
      true
  end

  @doc "The `monitor_nodes` events the peer's watcher saw."
  def events(%Peer{} = peer), do: call(peer, NodeWatcher, :events, [])

  @doc """
  A mark in the peer's event log: pass it as `after:` to `await_event/4` to
  wait only for events that happen after this point.
  """
  def mark(%Peer{} = peer), do: length(events(peer))

  @doc """
  Waits until `peer` saw `event` (`:nodeup` or `:nodedown`) about `about`,
  among the events after the `:after` mark (default 0), and returns it as
  `{event, node, info, at_ms}`. Fails the test after `:timeout` ms
  (default 15 000).
  """
  def await_event(%Peer{} = peer, event, about, opts \\ []) do
    about = node_of(about)
    mark = Keyword.get(opts, :after, 0)
    timeout = Keyword.get(opts, :timeout, 15_000)
    deadline = System.monotonic_time(:millisecond) + timeout

    poll(deadline, fn ->
      peer
      |> events()
      |> Enum.drop(mark)
      |> Enum.find(fn {e, n, _info, _at} -> e == event and n == about end)
    end) ||
      flunk(
        "#{peer.node} saw no #{event} of #{about} within #{timeout} ms: #{inspect(events(peer))}"
      )
  end

  @doc """
  Waits until the ClusterScope recorder on `peer` saw an event for which
  `fun` returns true, among events with an id above `after` (default 0).
  Returns the event; fails the test after `:timeout` ms (default 3 000).
  """
  def await_cluster_event(%Peer{} = peer, fun, opts \\ []) do
    after_id = Keyword.get(opts, :after, 0)
    timeout = Keyword.get(opts, :timeout, 3_000)
    deadline = System.monotonic_time(:millisecond) + timeout

    poll(deadline, fn ->
      peer
      |> call(NodeWatcher, :cluster_events, [])
      |> Enum.find(&(&1.id > after_id and fun.(&1)))
    end) ||
      flunk(
        "#{peer.node} saw no matching cluster event within #{timeout} ms: " <>
          inspect(call(peer, NodeWatcher, :cluster_events, []), limit: 50)
      )
  end

  @doc "The id of the last cluster event the recorder on `peer` saw (0 if none)."
  def last_cluster_event(%Peer{} = peer) do
    case call(peer, NodeWatcher, :cluster_events, []) do
      [] -> 0
      events -> List.last(events).id
    end
  end

  @doc """
  Polls `fun.()` on the result of `ClusterScope.run(op)` on `peer` until it
  is truthy; returns that data. Fails after `timeout` ms (default 3 000).
  """
  def await_run(%Peer{} = peer, op, fun, timeout \\ 3_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    last = :persistent_term.get({__MODULE__, :last}, nil)

    poll(deadline, fn ->
      case call(peer, ClusterScope, :run, [op, %{}], 5_000) do
        {:ok, data} ->
          :persistent_term.put({__MODULE__, :last}, data)
          if fun.(data), do: data

        _ ->
          nil
      end
    end) ||
      flunk(
        "#{op} on #{peer.node} did not match within #{timeout} ms; last: " <>
          inspect(:persistent_term.get({__MODULE__, :last}, last), limit: 80)
      )
  end

  @doc "Polls `fun` every 50 ms until it returns a truthy value or the deadline passes."
  def poll(deadline, fun) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) >= deadline do
          nil
        else
          Process.sleep(50)
          poll(deadline, fun)
        end
    end
  end

  @doc """
  `:ok` when partitions can be made here (root and a working `iptables`),
  otherwise `{:error, reason}`.
  """
  def chaos_available? do
    cond do
      System.find_executable("iptables") == nil ->
        {:error, "iptables is not installed (apt-get install iptables)"}

      System.cmd("id", ["-u"]) != {"0\n", 0} ->
        {:error, "iptables needs root"}

      match?({_, 0}, iptables(["-L", "INPUT", "-n"])) ->
        :ok

      true ->
        {:error, "iptables does not work here: " <> elem(iptables(["-L", "INPUT", "-n"]), 0)}
    end
  end

  defp node_of(%Peer{node: node}), do: node
  defp node_of(node) when is_atom(node), do: node

  defp rule(%Peer{ip: from}, %Peer{ip: to}) do
    ["-s", ip(from), "-d", ip(to), "-j", "DROP"]
  end

  # Packets over 100 bytes: data. A bare ACK (with TCP timestamps) is 52
  # bytes, an Erlang tick 56.
  defp data_rule(%Peer{ip: from}, %Peer{ip: to}) do
    [
      "-s",
      ip(from),
      "-d",
      ip(to),
      "-p",
      "tcp",
      "-m",
      "length",
      "--length",
      "100:65535",
      "-j",
      "DROP"
    ]
  end

  defp ip(tuple), do: tuple |> :inet.ntoa() |> List.to_string()

  defp ensure_chain! do
    iptables(["-N", chain()])

    if not match?({_, 0}, iptables(["-C", "INPUT", "-j", chain()])) do
      iptables!(["-I", "INPUT", "-j", chain()])
    end
  end

  defp delete_all(rule) do
    case iptables(["-D", chain() | rule]) do
      {_, 0} -> delete_all(rule)
      _ -> :ok
    end
  end

  defp iptables(args), do: System.cmd("iptables", ["-w" | args], stderr_to_stdout: true)

  defp iptables!(args) do
    {out, status} = iptables(args)
    assert status == 0, "iptables #{Enum.join(args, " ")} failed: #{out}"
  end

  defp signal(os_pid, sig) do
    {out, status} = System.cmd("kill", ["-#{sig}", "#{os_pid}"], stderr_to_stdout: true)
    if status == 0, do: :ok, else: {:error, out}
  end
end
