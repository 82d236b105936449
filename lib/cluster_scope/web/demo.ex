defmodule ClusterScope.Web.Demo do
  @moduledoc """
  The demo cluster behind `mix cluster_scope.demo` (`make demo`): real peer
  nodes on 127.0.0.1 with ClusterScope started, a small workload on every
  node, and the faults the dashboard can inject into it.

  A node is *in demo mode* exactly while this server runs on it (started by
  `start/1`, which the mix task calls). The demo operations
  (`demo_cut_node`, `demo_freeze_node`, `demo_heal_node`) act only on the
  peers this server started, and answer `forbidden` on any other node: a
  production node never runs it.

  ## Faults

    * **cut** - the peer drops every distribution link and refuses new ones
      (it holds a wrong cookie for every other node, so handshakes fail
      both ways); its OS process keeps running. Detection sees its links
      close (`down`, "connection closed") and every reconnection refused
      until the heal, then `up`. No root, no iptables: the peers share
      127.0.0.1 (a silent packet drop, as `iptables` makes in the tests,
      needs root and addresses of their own). The peer is still controlled
      over its standard I/O, which no cut reaches.
    * **freeze** - `SIGSTOP` of the peer's OS process: its links stay open
      but nothing answers (the phi detectors and tick timeouts see it).
    * **heal** - `SIGCONT`, the right cookies back, and connections to every
      node of the demo.

  ## Workload (`ClusterScope.Web.Demo.Workload`)

  On every node: #{4} busy processes (a little work every #{50} ms), one
  process whose mailbox grows (#{10} messages a second, up to #{50_000}),
  a Horde registry `:cluster_scope_demo_registry` with a few names when
  Horde loads, and one sandbox `demo` spread over the nodes (children of
  `ClusterScope.Web.Demo.Worker`, the only module the demo makes
  startable).

  ## Cost

  Starting takes the peers' boot time (about a second each, in parallel).
  The workload costs a few percent of one core on each node.
  """

  use GenServer

  alias ClusterScope.LocalCluster
  alias ClusterScope.Web.Demo.Workload

  @cut_cookie :cluster_scope_demo_cut

  @doc """
  Starts the demo: this node distributed (as `cluster_scope_demo` unless it
  already is), `nodes:` peers (default 3), the workload everywhere. Returns
  the server's pid, the peers' nodes and the sandbox (or why there is none).
  """
  @spec start(keyword()) :: {:ok, map()} | {:error, term()}
  def start(opts \\ []) do
    case GenServer.start(__MODULE__, opts, name: __MODULE__, timeout: 120_000) do
      {:ok, pid} -> {:ok, Map.put(info(), :pid, pid)}
      {:error, _} = error -> error
    end
  end

  @doc "Stops the demo: heals every peer, stops the workload and the peers."
  @spec stop() :: :ok
  def stop do
    case Process.whereis(__MODULE__) do
      nil -> :ok
      pid -> GenServer.stop(pid, :normal, 60_000)
    end
  end

  @doc "Whether this node runs the demo (demo mode)."
  @spec active?() :: boolean()
  def active?, do: Process.whereis(__MODULE__) != nil

  @doc "The demo's peers (`%{node, os_pid, fault}`) and sandbox."
  @spec info() :: map()
  def info, do: call(:info)

  @doc "The `ClusterScope.LocalCluster.Peer` of a demo peer (its control connection)."
  @spec peer(node()) :: LocalCluster.Peer.t() | nil
  def peer(node) do
    case call({:peer, node}) do
      {:error, _} -> nil
      peer -> peer
    end
  end

  @doc """
  Applies `fault` (`:cut`, `:freeze` or `:heal`) to the demo peer named
  `node` (text, compared with the peers' names: no atom is created).
  """
  @spec fault(:cut | :freeze | :heal, String.t()) :: {:ok, map()} | {:error, term()}
  def fault(fault, node) when fault in [:cut, :freeze, :heal] and is_binary(node),
    do: call({:fault, fault, node})

  defp call(request) do
    GenServer.call(__MODULE__, request, 30_000)
  catch
    :exit, {:noproc, _} -> {:error, :not_demo}
    :exit, {:timeout, _} -> {:error, {:unavailable, "the demo did not answer within 30 s"}}
  end

  @doc false
  # The REST part shared by the three fault operations (one per file:
  # demo_cut_node, demo_freeze_node, demo_heal_node).
  @spec fault_rest_config(String.t(), String.t()) :: map()
  def fault_rest_config(action, summary) do
    %{
      method: :post,
      path: "/api/v1/demo/nodes/:node/#{action}",
      summary: summary,
      parameters: [
        %{
          name: :node,
          type: :string,
          required: true,
          max_length: 255,
          location: :path,
          description: "the peer's node name"
        }
      ],
      responses: %{
        200 => %{description: "the peer and the demo's faults"},
        403 => %{description: "forbidden: this node is not in demo mode"},
        404 => %{description: "not a peer of the demo"}
      }
    }
  end

  @doc false
  # The execution shared by the fault operations: outside demo mode, the
  # operation's `forbidden` error.
  @spec run_fault(:cut | :freeze | :heal, String.t()) :: {:ok, map()} | {:error, term()}
  def run_fault(action, node) do
    case fault(action, node) do
      {:ok, result} -> {:ok, result}
      {:error, :not_demo} -> {:error, not_demo()}
      {:error, _} = error -> error
    end
  end

  @doc """
  The error of a demo operation on a node that does not run the demo.
  """
  @spec not_demo() :: ClusterScope.Error.t()
  def not_demo do
    ClusterScope.Error.new(
      :forbidden,
      "demo operations run only on a node in demo mode (started by `make demo`, mix cluster_scope.demo); this node is not",
      details: %{mode: "not_demo"},
      remediation: [
        "Run `make demo` (or `mix cluster_scope.demo`) and use the URL and token it prints.",
        "On a real cluster, faults are injected with real tools (iptables, SIGSTOP), never by ClusterScope."
      ]
    )
  end

  # -- node-side (run on a peer over its standard I/O) -----------------------------------

  @doc false
  # On the peer: a wrong cookie for every other node, then every link
  # dropped: handshakes fail both ways until `rejoin/1`.
  def isolate(nodes) do
    for n <- nodes, n != node(), do: :erlang.set_cookie(n, @cut_cookie)
    for n <- :erlang.nodes(:connected), do: :erlang.disconnect_node(n)
    :ok
  end

  @doc false
  # On the peer: the shared cookie for every node again, and connections.
  def rejoin(nodes) do
    cookie = :erlang.get_cookie()
    for n <- nodes, n != node(), do: :erlang.set_cookie(n, cookie)
    Enum.map(nodes -- [node()], &{&1, :net_kernel.connect_node(&1)})
  end

  # -- server -------------------------------------------------------------------------------

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    count = Keyword.get(opts, :nodes, 3)

    startable = [ClusterScope.Web.Demo.Worker]
    previous = Application.fetch_env(:cluster_scope, :startable_modules)

    Application.put_env(
      :cluster_scope,
      :startable_modules,
      Enum.uniq(startable ++ Application.get_env(:cluster_scope, :startable_modules, []))
    )

    ClusterScope.Config.load()

    with {:ok, _} <- LocalCluster.ensure_distributed(name: "cluster_scope_demo"),
         {:ok, peers} <-
           LocalCluster.start_peers(count,
             name_prefix: Keyword.get(opts, :name_prefix, "cluster_scope_demo_#{System.pid()}"),
             connection: :standard_io,
             app_env: [{:cluster_scope, :startable_modules, startable}]
           ) do
      :ok = Workload.start()
      for peer <- peers, do: :ok = LocalCluster.call(peer, Workload, :start, [], 15_000)
      sandbox = Workload.start_sandbox()

      faults = Map.new(peers, &{Atom.to_string(&1.node), :none})
      {:ok, %{peers: peers, faults: faults, sandbox: sandbox, previous_startable: previous}}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  @impl true
  def handle_call(:info, _from, state), do: {:reply, describe(state), state}

  def handle_call({:peer, node}, _from, state),
    do: {:reply, Enum.find(state.peers, &(&1.node == node)), state}

  def handle_call({:fault, fault, name}, _from, state) do
    case Enum.find(state.peers, &(Atom.to_string(&1.node) == name)) do
      nil ->
        known = Enum.map(state.peers, &Atom.to_string(&1.node))

        {:reply,
         {:error,
          ClusterScope.Error.new(
            :not_found,
            "node #{inspect(String.slice(name, 0, 200))} is not a peer of the demo",
            details: %{field: "node", known: known}
          )}, state}

      peer ->
        case apply_fault(fault, peer, state) do
          {:ok, state} ->
            {:reply, {:ok, %{node: peer.node, fault: state.faults[name], demo: describe(state)}},
             state}

          {:error, _} = error ->
            {:reply, error, state}
        end
    end
  end

  @impl true
  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    with %{id: id} when is_binary(id) <- state.sandbox do
      _ = safe(fn -> ClusterScope.Sandbox.destroy(id) end)
    end

    for peer <- state.peers do
      _ = signal(peer, "CONT")
      LocalCluster.stop(peer)
    end

    Workload.stop()

    case state.previous_startable do
      {:ok, value} -> Application.put_env(:cluster_scope, :startable_modules, value)
      :error -> Application.delete_env(:cluster_scope, :startable_modules)
    end

    ClusterScope.Config.load()
    :ok
  end

  defp apply_fault(:cut, peer, state) do
    name = Atom.to_string(peer.node)

    case state.faults[name] do
      :frozen ->
        {:error,
         ClusterScope.Error.new(:invalid_params, "#{name} is frozen: heal it before cutting it",
           details: %{field: "node"}
         )}

      _ ->
        :ok = LocalCluster.call(peer, __MODULE__, :isolate, [all_nodes(state)], 15_000)
        {:ok, put_in(state.faults[name], :cut)}
    end
  end

  defp apply_fault(:freeze, peer, state) do
    :ok = signal(peer, "STOP")
    {:ok, put_in(state.faults[Atom.to_string(peer.node)], :frozen)}
  end

  defp apply_fault(:heal, peer, state) do
    name = Atom.to_string(peer.node)
    :ok = signal(peer, "CONT")

    if state.faults[name] == :cut,
      do: LocalCluster.call(peer, __MODULE__, :rejoin, [all_nodes(state)], 20_000)

    {:ok, put_in(state.faults[name], :none)}
  end

  defp safe(fun) do
    fun.()
  catch
    _, _ -> :error
  end

  defp all_nodes(state), do: [node() | Enum.map(state.peers, & &1.node)]

  defp signal(peer, sig) do
    case System.cmd("kill", ["-#{sig}", Integer.to_string(peer.os_pid)], stderr_to_stdout: true) do
      {_, 0} -> :ok
      {out, _} -> {:error, {:unavailable, "kill -#{sig} failed: #{String.trim(out)}"}}
    end
  end

  defp describe(state) do
    %{
      node: node(),
      peers:
        Enum.map(state.peers, fn peer ->
          %{node: peer.node, os_pid: peer.os_pid, fault: state.faults[Atom.to_string(peer.node)]}
        end),
      sandbox: state.sandbox
    }
  end
end

defmodule ClusterScope.Web.Demo.Worker do
  @moduledoc """
  A child of the demo's sandbox: a process that does a little work every
  second. Started only by the demo (the one module it makes startable).
  """

  @doc "Starts a worker linked to the caller (its sandbox slot)."
  @spec start_link() :: {:ok, pid()}
  def start_link do
    {:ok, spawn_link(fn -> loop(0) end)}
  end

  defp loop(n) do
    receive do
      :stop -> :ok
    after
      1_000 -> loop(n + Enum.sum(1..100))
    end
  end
end

defmodule ClusterScope.Web.Demo.Workload do
  @moduledoc """
  The demo's workload on one node (see `ClusterScope.Web.Demo`): busy
  processes, a growing mailbox and, when Horde loads, a Horde registry, all
  under one holder process registered as `:cluster_scope_demo_workload`.
  """

  @busy 4
  @tick_ms 50
  @mailbox_rate 10
  @mailbox_max 50_000

  @doc "Starts the workload on this node (idempotent)."
  @spec start() :: :ok
  def start do
    case Process.whereis(:cluster_scope_demo_workload) do
      nil ->
        parent = self()
        pid = spawn(fn -> holder(parent) end)

        receive do
          {^pid, :ready} -> :ok
        after
          10_000 -> :ok
        end

      _pid ->
        :ok
    end
  end

  @doc "Stops the workload on this node."
  @spec stop() :: :ok
  def stop do
    case Process.whereis(:cluster_scope_demo_workload) do
      nil ->
        :ok

      pid ->
        ref = Process.monitor(pid)
        Process.exit(pid, :shutdown)

        receive do
          {:DOWN, ^ref, _, _, _} -> :ok
        after
          5_000 -> :ok
        end
    end
  end

  @doc "What runs on this node: the pids of the busy processes, the mailbox and Horde."
  @spec describe() :: map()
  def describe do
    mailbox = Process.whereis(:cluster_scope_demo_mailbox)

    %{
      busy: for(i <- 1..@busy, pid = Process.whereis(busy_name(i)), pid != nil, do: pid),
      mailbox: mailbox,
      mailbox_len:
        if(mailbox, do: elem(Process.info(mailbox, :message_queue_len) || {nil, 0}, 1), else: 0),
      horde: Process.whereis(:cluster_scope_demo_registry)
    }
  end

  @doc "Creates the demo sandbox over every node running ClusterScope."
  @spec start_sandbox() :: map()
  def start_sandbox do
    case ClusterScope.Sandbox.create(%{
           name: "demo",
           children: [%{"module" => "ClusterScope.Web.Demo.Worker", "count" => 4}],
           strategy: "spread"
         }) do
      {:ok, sandbox} -> %{id: sandbox[:id], name: "demo"}
      {:error, reason} -> %{error: inspect(reason, limit: 20)}
    end
  catch
    kind, reason -> %{error: Exception.format_banner(kind, reason)}
  end

  defp holder(parent) do
    Process.register(self(), :cluster_scope_demo_workload)
    Process.flag(:trap_exit, true)

    for i <- 1..@busy do
      pid = spawn_link(fn -> busy(0) end)
      Process.register(pid, busy_name(i))
    end

    mailbox = spawn_link(fn -> never_reads() end)
    Process.register(mailbox, :cluster_scope_demo_mailbox)
    spawn_link(fn -> feed(mailbox, 0) end)
    start_horde()
    send(parent, {self(), :ready})

    receive do
      {:EXIT, _, :shutdown} -> exit(:shutdown)
    end
  end

  defp busy_name(1), do: :cluster_scope_demo_busy_1
  defp busy_name(2), do: :cluster_scope_demo_busy_2
  defp busy_name(3), do: :cluster_scope_demo_busy_3
  defp busy_name(4), do: :cluster_scope_demo_busy_4

  defp busy(n) do
    Process.sleep(@tick_ms)
    busy(rem(n + Enum.reduce(1..2_000, 0, &(&1 + &2)), 1_000_000))
  end

  defp never_reads do
    receive do
      :cluster_scope_demo_stop -> :ok
    end
  end

  defp feed(mailbox, n) when n < @mailbox_max do
    send(mailbox, {:demo_work, n, System.system_time(:millisecond)})
    Process.sleep(div(1_000, @mailbox_rate))
    feed(mailbox, n + 1)
  end

  defp feed(_mailbox, _n), do: Process.sleep(:infinity)

  defp start_horde do
    registry = Horde.Registry

    if Code.ensure_loaded?(registry) do
      {:ok, _} = Application.ensure_all_started(:horde)

      {:ok, _} =
        apply(registry, :start_link, [
          [name: :cluster_scope_demo_registry, keys: :unique, members: :auto]
        ])

      for i <- 1..3 do
        key = "demo_#{node()}_#{i}"
        spawn_link(fn -> horde_name(registry, key) end)
      end
    end

    :ok
  catch
    _, _ -> :ok
  end

  defp horde_name(registry, key) do
    _ = apply(registry, :register, [:cluster_scope_demo_registry, key, :demo])
    Process.sleep(:infinity)
  end
end
