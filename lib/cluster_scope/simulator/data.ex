defmodule ClusterScope.Simulator.Data do
  @moduledoc """
  What the virtual nodes of `ClusterScope.Simulator` say of themselves:
  processes, a health sample with its alerts, operation latency, node
  facts and build info. Generated, never run: a virtual process is a row,
  not a process.

  Everything is a pure function of the simulator's seed, the node's index
  and incarnation, and the simulated time (milliseconds since the
  simulation started): the same seed gives the same cluster. What does
  not change with time (the process table of a node, its latency
  histograms) is generated once per node and cached in the simulator's
  table; what changes (reductions, the growing mailbox, memory of that
  process) is computed at the time asked.

  ## The simulated cluster

  Each node runs the runtime's processes (kernel, stdlib, logger, elixir,
  ClusterScope), and a web shop: an endpoint with acceptors and
  connections, cart sessions, order workers, a database pool, a cache.
  Three hot spots land on nodes chosen by the seed:

    * a mailer queue that grows by 20 messages a second from 12,000
      (a `max_message_queue_len` warning, critical after about 73 minutes);
    * a report builder burning reductions, its node's schedulers 95 % busy
      with a run queue of 9 (scheduler and run queue warnings);
    * a cache holding 6.5 GiB of ETS (a memory warning at 85 %).

  The health sample of a node is computed from its rows (process count,
  memory, longest queue, reductions per second), and its alerts from the
  sample with the thresholds in force on this node
  (`ClusterScope.Health.Alerts.instant/5`), so the node with the long
  queue is the one with the queue alert.

  ## Cost

  A node's rows: about 150 to 400 tuples, generated once and cached, then
  copied out of the table and updated per call; a page, summary or window
  over them runs in the Rust core as for an agentless node. With 100
  virtual nodes, measured on a shared 2-core machine (load 10) once the
  tables are cached: a process list page 20 to 65 ms, a distribution 50
  to 220 ms, `cluster_alerts` about 10 ms, `cluster_health` about 20 ms,
  `node_resources` 5 ms. Latency: 24 operations per node, generated once
  per node (tens of milliseconds); `operation_metrics` then merges the
  histograms of the 101 nodes as it would real ones (about 0.4 s, up to
  2.5 s under heavy load).
  Nothing is computed unless the mode is simulated.
  """

  alias ClusterScope.{Fanout, Native, ProcessRef, Simulator}
  alias ClusterScope.Health.{Alerts, Thresholds}
  alias ClusterScope.Metrics.Histogram
  alias ClusterScope.Agent.Processes.Rows

  @two32 4_294_967_296
  # The virtual nodes have run for a minute when the simulation starts, so
  # a window (at most 30 s) always has its two snapshots.
  @head_start_ms 60_000
  @system_memory 8 * 1024 * 1024 * 1024
  @schedulers 2
  @process_limit 262_144
  @port_limit 65_536
  @atom_limit 1_048_576

  # {count range, registered name, initial call, current function,
  #  application, type, memory range (bytes), reductions per second range}
  @runtime [
    {1, :init, {:otp_ring0, :start, 2}, {:init, :loop, 1}, :undefined, :plain, 20_000..40_000,
     0..2},
    {1, :erts_code_purger, {:erts_code_purger, :start, 0},
     {:erts_code_purger, :wait_for_request, 0}, :undefined, :plain, 5_000..30_000, 0..1},
    {1, :erl_prim_loader, {:erlang, :apply, 2}, {:erl_prim_loader, :loop, 3}, :undefined, :plain,
     20_000..140_000, 0..1},
    {1, :application_controller, {:application_controller, :start, 1}, {:gen_server, :loop, 7},
     :undefined, :gen_server, 400_000..900_000, 0..5},
    {1, :kernel_sup, {:supervisor, :kernel, 1}, {:gen_server, :loop, 7}, :kernel, :supervisor,
     30_000..70_000, 0..1},
    {1, :code_server, {:erlang, :apply, 2}, {:code_server, :loop, 1}, :kernel, :plain,
     200_000..600_000, 0..20},
    {1, :global_name_server, {:global, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     10_000..40_000, 0..10},
    {1, :net_kernel, {:net_kernel, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     8_000..30_000, 1..40},
    {1, :auth, {:auth, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server, 5_000..9_000,
     0..1},
    {1, :rex, {:rpc, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server, 5_000..9_000,
     0..5},
    {1, :inet_db, {:inet_db, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     5_000..12_000, 0..1},
    {1, :file_server_2, {:file_server, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     10_000..30_000, 0..3},
    {1, :user, {:group, :server, 3}, {:group, :server_loop, 3}, :kernel, :plain, 10_000..30_000,
     0..1},
    {1, :logger, {:logger_olp, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     20_000..90_000, 1..60},
    {1, :logger_sup, {:supervisor, :logger_sup, 1}, {:gen_server, :loop, 7}, :kernel, :supervisor,
     5_000..9_000, 0..1},
    {1, :pg, {:pg, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server, 10_000..40_000,
     1..30},
    {1, :cluster_scope, {:pg, :init, 1}, {:gen_server, :loop, 7}, :kernel, :gen_server,
     10_000..40_000, 5..80},
    {1, :elixir_sup, {:supervisor, :elixir_sup, 1}, {:gen_server, :loop, 7}, :elixir, :supervisor,
     5_000..9_000, 0..1},
    {1, :elixir_config, {:elixir_config, :init, 1}, {:gen_server, :loop, 7}, :elixir, :gen_server,
     5_000..9_000, 0..1},
    {1, Logger.Supervisor, {:supervisor, Logger.Supervisor, 1}, {:gen_server, :loop, 7}, :logger,
     :supervisor, 5_000..9_000, 0..1},
    {1, ClusterScope.Supervisor, {:supervisor, ClusterScope.Supervisor, 1},
     {:gen_server, :loop, 7}, :cluster_scope, :supervisor, 10_000..30_000, 0..2},
    {1, ClusterScope.Cluster.Heartbeat, {ClusterScope.Cluster.Heartbeat, :init, 1},
     {:gen_server, :loop, 7}, :cluster_scope, :gen_server, 30_000..120_000, 200..900},
    {1, ClusterScope.Cluster.State, {ClusterScope.Cluster.State, :init, 1},
     {:gen_server, :loop, 7}, :cluster_scope, :gen_server, 60_000..400_000, 50..600},
    {1, ClusterScope.Health.Monitor, {ClusterScope.Health.Monitor, :init, 1},
     {:gen_server, :loop, 7}, :cluster_scope, :gen_server, 30_000..90_000, 20..200},
    {1, ClusterScope.Agent.Processes.Snapshots,
     {ClusterScope.Agent.Processes.Snapshots, :init, 1}, {:gen_server, :loop, 7}, :cluster_scope,
     :gen_server, 10_000..40_000, 0..20},
    {1, ClusterScope.Metrics.OperationLatency, {ClusterScope.Metrics.OperationLatency, :init, 1},
     {:gen_server, :loop, 7}, :cluster_scope, :gen_server, 5_000..20_000, 0..20},
    {5..9, nil, {:application_master, :init, 4}, {:application_master, :main_loop, 2}, :undefined,
     :plain, 5_000..9_000, 0..1},
    {5..9, nil, {:application_master, :start_it, 4}, {:application_master, :loop_it, 4},
     :undefined, :plain, 2_000..6_000, 0..1}
  ]

  @shop [
    {1, Shop.Supervisor, {:supervisor, Shop.Supervisor, 1}, {:gen_server, :loop, 7}, :shop,
     :supervisor, 10_000..30_000, 0..2},
    {1, Shop.Endpoint, {:supervisor, Shop.Endpoint, 1}, {:gen_server, :loop, 7}, :shop,
     :supervisor, 10_000..30_000, 0..2},
    {1, Shop.PubSub, {Phoenix.PubSub.Supervisor, :init, 1}, {:gen_server, :loop, 7},
     :phoenix_pubsub, :gen_server, 10_000..60_000, 5..200},
    {1, Shop.Repo, {DBConnection.ConnectionPool, :init, 1}, {:gen_server, :loop, 7},
     :db_connection, :gen_server, 20_000..90_000, 50..900},
    {10, nil, {DBConnection.Connection, :init, 1}, {:gen_server, :loop, 7}, :db_connection,
     :gen_server, 20_000..200_000, 20..3_000},
    {10..20, nil, {:ranch_acceptor, :loop, 5}, {:prim_inet, :accept0, 3}, :ranch, :plain,
     3_000..8_000, 0..20},
    {5..40, nil, {:cowboy_clear, :connection_process, 4}, {:cowboy_http, :loop, 1}, :cowboy,
     :proc_lib, 10_000..120_000, 10..2_000},
    {20..150, nil, {Shop.Cart.Session, :init, 1}, {:gen_server, :loop, 7}, :shop, :gen_server,
     5_000..60_000, 0..200},
    {4..12, nil, {Shop.Orders.Worker, :init, 1}, {:gen_server, :loop, 7}, :shop, :gen_server,
     20_000..250_000, 100..20_000},
    {0..5, nil, {Shop.Orders.Sync, :run, 1}, {Shop.Orders.Sync, :run, 1}, :shop, :task,
     10_000..90_000, 1_000..50_000},
    {1, Shop.Cache, {Shop.Cache, :init, 1}, {:gen_server, :loop, 7}, :shop, :gen_server,
     2_000_000..8_000_000, 100..5_000},
    {1, :telemetry_poller_default, {:telemetry_poller, :init, 1}, {:gen_server, :loop, 7},
     :telemetry_poller, :gen_server, 5_000..20_000, 1..30}
  ]

  @operations ~w(cluster_alerts cluster_events cluster_health cluster_topology create_sandbox
                 destroy_sandbox get_process_info get_sandbox_info get_trace_events
                 kill_process list_operations list_sandboxes list_trace_sessions
                 node_build_info node_info node_resources operation_metrics
                 partition_status process_distribution process_list send_message
                 set_alert_thresholds stop_trace_session trace_process)

  # ---------------------------------------------------------------------
  # Mode

  @doc "Whether operations answer for virtual nodes now (simulated mode, simulation running)."
  @spec active?() :: boolean()
  def active?, do: ClusterScope.Mode.current() == :simulated and Simulator.running?()

  @doc "`map` with `simulated: true` when `active?/0`, else `map` unchanged."
  @spec mark(map()) :: map()
  def mark(map), do: if(active?(), do: Map.put(map, :simulated, true), else: map)

  @doc """
  The virtual nodes a cluster-wide call reaches: `{up, node_errors}`,
  where a node failed (down), frozen or not up as this node's cluster
  state sees it (a partition) is a node error shaped like a real one
  (`ClusterScope.Fanout.not_called/2`). `only` restricts to one node.
  """
  @spec targets(node() | nil) :: {[node()], [Fanout.node_error()]}
  def targets(only \\ nil) do
    statuses = Fanout.node_statuses()

    Simulator.virtual_nodes()
    |> Enum.filter(&(only in [nil, &1]))
    |> Enum.reduce({[], []}, fn node, {up, errors} ->
      case unavailable(node, statuses) do
        nil -> {[node | up], errors}
        error -> {up, [error | errors]}
      end
    end)
    |> then(fn {up, errors} -> {Enum.reverse(up), Enum.reverse(errors)} end)
  end

  @doc "The node error of a virtual node that cannot answer now, or `nil`."
  @spec unavailable(node(), map()) :: Fanout.node_error() | nil
  def unavailable(node, statuses \\ Fanout.node_statuses()) do
    seen = Map.get(statuses, node, :up)

    case Simulator.node_state(node) do
      {:down, _} -> Fanout.not_called(node, :down)
      {:frozen, _} -> Fanout.not_called(node, if(seen == :up, do: :suspected, else: seen))
      {:up, _} when seen != :up -> Fanout.not_called(node, seen)
      {:up, _} -> nil
      nil -> Fanout.not_called(node, :down)
    end
  end

  @doc """
  Simulated time now: milliseconds since the simulation started, plus a
  minute the virtual nodes ran before.
  """
  @spec now() :: non_neg_integer()
  def now do
    case Simulator.meta() do
      %{started_ms: started} ->
        @head_start_ms + max(System.monotonic_time(:millisecond) - started, 0)

      nil ->
        @head_start_ms
    end
  end

  # ---------------------------------------------------------------------
  # Processes

  @doc """
  The rows of a virtual node at simulated time `at_ms` (default now), in
  the form `ClusterScope.Native.procs_snapshot_push/2` takes, keyed by the
  integer of their pid's numbers (`ClusterScope.Agent.Processes.Rows.key/2`), killed
  processes left out.
  """
  @spec rows(node(), non_neg_integer() | nil) :: [tuple()]
  def rows(node, at_ms \\ nil) do
    at_ms = at_ms || now()
    {live, incarnation} = live(node)
    for p <- live, do: row(p, incarnation, at_ms)
  end

  # The static table of a node's current incarnation, killed processes out.
  defp live(node) do
    {seed, index, count} = identity(node)
    {_, incarnation} = Simulator.node_state(node) || {:down, 0}

    static =
      Simulator.cached({:procs, node, incarnation}, fn -> processes(seed, index, count) end)

    killed = Simulator.killed(node, incarnation)
    {Enum.reject(static, &MapSet.member?(killed, Rows.key(&1.id, incarnation))), incarnation}
  end

  @doc """
  A Rust snapshot of a virtual node's rows at `at_ms` (default now): the
  same snapshot an agentless node's collection gives, paged, summarised
  and windowed by the same core.
  """
  @spec snapshot(node(), non_neg_integer() | nil) :: {:ok, reference()} | {:error, term()}
  def snapshot(node, at_ms \\ nil) do
    with snapshot when is_reference(snapshot) <- Native.procs_snapshot_new(),
         :ok <- Native.procs_snapshot_push_dirty(snapshot, rows(node, at_ms)) do
      {:ok, snapshot}
    else
      {:error, _} = error -> error
      other -> {:error, other}
    end
  end

  @doc """
  The static process table of node number `index` (1-based) of a
  simulation of `count` nodes with `seed`: a list of maps (`id`, `name`,
  `initial_call`, `current_function`, `application`, `type`, `memory`,
  `base_reductions`, `rate` per second, `queue`, `status`, `hot`).
  Pure: the same arguments give the same table.
  """
  @spec processes(integer(), pos_integer(), pos_integer()) :: [map()]
  def processes(seed, index, count) do
    rand = :rand.seed_s(:exsss, {seed, index, 1_000_003})
    hot = hot_spots(seed, count)

    {templates, rand} =
      Enum.map_reduce(@runtime ++ @shop, rand, fn t, rand -> expand(t, rand) end)

    extra =
      for {spot, i} <- hot, i == index do
        case spot do
          :queue ->
            {1, Shop.Mailer.Queue, {Shop.Mailer.Queue, :init, 1},
             {Shop.Mailer.Queue, :deliver, 2}, :shop, :gen_server, 200_000..200_000, 500..800,
             :queue}

          :busy ->
            {1, Shop.Reports.Builder, {Shop.Reports.Builder, :init, 1},
             {Shop.Reports.Builder, :aggregate, 2}, :shop, :gen_server, 4_000_000..6_000_000,
             40_000_000..40_000_000, :busy}

          :memory ->
            {1, Shop.Catalog.Store, {Shop.Catalog.Store, :init, 1}, {:gen_server, :loop, 7},
             :shop, :gen_server, 30_000_000..40_000_000, 100..900, :memory}
        end
      end

    {hot_templates, rand} = Enum.map_reduce(extra, rand, fn t, rand -> expand(t, rand) end)

    (List.flatten(templates) ++ List.flatten(hot_templates))
    |> Enum.map_reduce({0, rand}, fn p, {id, rand} ->
      # Pids with gaps, as a node that has run for a while has.
      {gap, rand} = :rand.uniform_s(6, rand)
      id = if id == 0, do: 0, else: id + gap
      {Map.put(p, :id, id), {id + 1, rand}}
    end)
    |> elem(0)
  end

  @doc """
  Which node index (1-based) carries each hot spot for `seed` and `count`
  nodes: `[queue: i, busy: j, memory: k]`, distinct when there are three
  nodes or more.
  """
  @spec hot_spots(integer(), pos_integer()) :: [{atom(), pos_integer()}]
  def hot_spots(seed, count) do
    rand = :rand.seed_s(:exsss, {seed, count, 7})

    {keyed, _} =
      Enum.map_reduce(1..count, rand, fn i, rand ->
        {u, rand} = :rand.uniform_s(rand)
        {{u, i}, rand}
      end)

    order = keyed |> Enum.sort() |> Enum.map(&elem(&1, 1))
    pick = fn n -> Enum.at(order, rem(n, count)) end
    [queue: pick.(0), busy: pick.(1), memory: pick.(2)]
  end

  defp expand({count, name, init, current, app, type, memory, rate}, rand),
    do: expand({count, name, init, current, app, type, memory, rate, nil}, rand)

  defp expand({count, name, init, current, app, type, memory, rate, hot}, rand) do
    {n, rand} = pick(count, rand)

    Enum.map_reduce(List.duplicate(nil, n), rand, fn _, rand ->
      {mem, rand} = pick(memory, rand)
      {r, rand} = pick(rate, rand)
      {base, rand} = :rand.uniform_s(2_000_000, rand)
      {q, rand} = :rand.uniform_s(100, rand)
      # A few processes of the shop have a message or two queued.
      queue = if app == :shop and type == :gen_server and q > 95, do: q - 95, else: 0

      status =
        cond do
          hot == :busy -> :running
          hot == :queue -> :runnable
          queue > 0 -> :runnable
          true -> :waiting
        end

      {%{
         name: name || [],
         initial_call: init,
         current_function: current,
         application: app,
         type: type,
         memory: mem,
         base_reductions: base + r * 3_600,
         rate: r,
         queue: queue,
         status: status,
         hot: hot
       }, rand}
    end)
  end

  defp pick(n, rand) when is_integer(n), do: {n, rand}

  defp pick(first..last, rand) when last > first do
    {u, rand} = :rand.uniform_s(last - first + 1, rand)
    {first + u - 1, rand}
  end

  defp pick(first.._, rand), do: {first, rand}

  # The row of a process at simulated time `at_ms`.
  defp row(p, incarnation, at_ms) do
    seconds = div(at_ms, 1000)

    {queue, memory} =
      case p.hot do
        # The mailer falls behind: 20 more messages a second, ~300 bytes each.
        :queue ->
          q = min(12_000 + div(max(at_ms - @head_start_ms, 0) * 20, 1000), 500_000)
          {q, p.memory + q * 300}

        _ ->
          {p.queue, p.memory}
      end

    words = div(memory, 8)
    heap = max(div(words * 2, 3), 233)

    {Rows.key(p.id, incarnation), memory, p.base_reductions + div(p.rate * at_ms, 1000) + seconds,
     queue, heap, 10 + rem(p.id, 40), max(words - 100, heap), p.status, p.current_function,
     p.name, p.initial_call, p.application, p.type}
  end

  @doc """
  Info on a virtual process, shaped like `ClusterScope.Procs.Control.info/2`'s
  answer (its state is simulated: nothing runs). `{:error, {:not_found, ...}}`
  when the process does not exist (never did, or was killed).
  """
  @spec process_info(ProcessRef.t()) :: {:ok, map()} | {:error, term()}
  def process_info(%ProcessRef{node: node} = ref) do
    with {:ok, row} <- find_row(ref) do
      {key, memory, reductions, queue, heap, stack, total, status, current, name, init, app, type} =
        row

      node_text = Atom.to_string(node)
      gl = %{node: node_text, pid: "0.#{div(key, @two32) + 1}.#{rem(key, @two32)}@#{node}"}

      {:ok,
       %{
         pid: ProcessRef.to_string(ref),
         node: node_text,
         registered_name: if(name == [], do: nil, else: Atom.to_string(name)),
         initial_call: mfa(init),
         current_function: mfa(current),
         application: app,
         type: type,
         status: status,
         memory: memory,
         reductions: reductions,
         message_queue_len: queue,
         heap_size: heap,
         total_heap_size: total,
         stack_size: stack,
         priority: :normal,
         trap_exit: type == :supervisor,
         links: [],
         monitors: [],
         monitored_by: [],
         ancestors: [],
         group_leader: gl,
         protected: nil,
         protection: :none
       }
       |> Map.merge(simulated_state(type, name, init))}
    end
  end

  # A behaviour's state, as `Control.info/2` gives it (JSON and text):
  # what the simulation knows of the process, nothing more.
  defp simulated_state(type, name, {m, _, _})
       when type in [:gen_server, :gen_statem, :gen_event, :supervisor] do
    state = %{simulated: true, module: m, name: if(name == [], do: nil, else: name)}
    %{state: ClusterScope.Procs.Terms.to_json(state), state_text: inspect(state)}
  end

  defp simulated_state(_type, _name, _init),
    do: %{state_error: "not an OTP behaviour: no state to read (simulated process)"}

  @doc """
  Kills a virtual process: it leaves its node's rows (until that node
  restarts after a failure). Answers like `ClusterScope.Procs.Control.kill/3`.
  """
  @spec kill(ProcessRef.t(), String.t()) :: {:ok, map()} | {:error, term()}
  def kill(%ProcessRef{node: node} = ref, reason) do
    with {:ok, row} <- find_row(ref),
         {_, incarnation} <- Simulator.node_state(node),
         :ok <- record_kill(node, incarnation, elem(row, 0)) do
      name = elem(row, 9)

      {:ok,
       %{
         pid: ProcessRef.to_string(ref),
         node: Atom.to_string(node),
         registered_name: if(name == [], do: nil, else: Atom.to_string(name)),
         reason: reason_text(reason),
         exited: true,
         exit_reason: reason_text(reason),
         forced: false
       }}
    end
  end

  defp record_kill(node, incarnation, key) do
    case Simulator.kill(node, incarnation, key) do
      :ok ->
        :ok

      {:error, :full} ->
        {:error,
         {:unavailable,
          "simulated: the simulator remembers at most 10,000 killed virtual processes; " <>
            "switch to simulated mode again to start afresh"}}

      {:error, :unknown_node} ->
        {:error, not_found(node)}
    end
  end

  defp reason_text("kill"), do: ":kill"
  defp reason_text("shutdown"), do: ":shutdown"
  defp reason_text("normal"), do: ":normal"
  defp reason_text(text), do: inspect({:shutdown, text})

  @doc """
  The refusal of a message to a virtual process: it runs no code, so
  nothing could receive, handle or answer it. An `unavailable` error
  naming the process and why, with `details.simulated: true`.
  """
  @spec refuse_message(ProcessRef.t()) :: {:error, ClusterScope.Error.t()}
  def refuse_message(%ProcessRef{} = ref) do
    text = ProcessRef.to_string(ref)

    {:error,
     ClusterScope.Error.new(
       :unavailable,
       "simulated: #{text} is a virtual process of the simulated mode; it runs no code, so " <>
         "no message can be delivered to it or answered",
       details: %{simulated: true, pid: text, field: "pid"},
       remediation: [
         "Send messages to processes of real nodes (this node, or a local_cluster mode).",
         "Virtual processes can be listed, inspected and killed."
       ]
     )}
  end

  defp find_row(%ProcessRef{node: node, id: id, serial: serial} = ref) do
    case unavailable(node) do
      nil ->
        key = Rows.key(id, serial)

        case Enum.find(rows(node), &(elem(&1, 0) == key)) do
          nil -> {:error, not_found(ref)}
          row -> {:ok, row}
        end

      error ->
        {:error, {:node_unavailable, error.reason, error}}
    end
  end

  defp not_found(%ProcessRef{} = ref) do
    {:not_found,
     "no process #{ProcessRef.to_string(ref)} (simulated: it was killed or never existed)"}
  end

  defp not_found(node), do: {:not_found, "#{node} is not a virtual node of this simulation"}

  # As ClusterScope.Procs.Control prints it.
  defp mfa({m, f, a}), do: "#{m}:#{f}/#{a}"

  # ---------------------------------------------------------------------
  # Health

  @doc """
  A virtual node's answer to `node_resources`: the same shape as
  `ClusterScope.Agent.resources/0` (`node`, `sample`, `status`, `alerts`,
  `thresholds`), the sample computed from its rows at `at_ms`.
  """
  @spec resources(node(), non_neg_integer() | nil) :: map()
  def resources(node, at_ms \\ nil) do
    at_ms = at_ms || now()
    sample = sample(node, at_ms)
    alerts = alerts(node, sample)

    %{
      node: node,
      sample: sample,
      status: monitor_status(node, sample),
      alerts: alerts,
      thresholds: thresholds()
    }
  end

  @doc "A virtual node's active alerts (`ClusterScope.Health.local_alerts/0`'s shape)."
  @spec local_alerts(node(), non_neg_integer() | nil, map() | nil) :: [map()]
  def local_alerts(node, at_ms \\ nil, statuses \\ nil) do
    at_ms = at_ms || now()
    alerts(node, sample(node, at_ms, statuses))
  end

  @doc "A virtual node's part of `cluster_health` (`ClusterScope.Health.local_health/0`'s shape)."
  @spec local_health(node(), non_neg_integer() | nil, map() | nil) :: map()
  def local_health(node, at_ms \\ nil, statuses \\ nil) do
    at_ms = at_ms || now()
    sample = sample(node, at_ms, statuses)
    alerts = alerts(node, sample)
    v = sample.values

    %{
      node: node,
      status: ClusterScope.Health.severity_status(Alerts.worst(alerts)),
      alerts: alerts,
      summary:
        v
        |> Map.take([
          :memory_total_bytes,
          :memory_total_pct,
          :process_count,
          :process_usage_pct,
          :run_queue,
          :scheduler_utilization_pct,
          :reductions_per_s,
          :max_message_queue_len,
          :connectivity
        ])
        |> Map.put(:sampled_at_ms, sample.at_ms),
      throttled: false,
      interval_ms: sample.interval_ms,
      horde: nil
    }
  end

  @doc """
  `{answers, node_errors}` of `ClusterScope.Health.cluster_call/3` with
  the virtual nodes' answers to `fun` (`:local_alerts` or
  `:local_health`) added when `active?/0`; unchanged otherwise.
  """
  @spec add_health({list(), list()}, :local_alerts | :local_health) :: {list(), list()}
  def add_health({answers, errors} = result, fun) do
    if active?() do
      {up, virtual_errors} = targets()
      at_ms = now()
      # The cluster state asked once, not once per virtual node.
      statuses = Fanout.node_statuses()
      virtual = for node <- up, do: {node, apply(__MODULE__, fun, [node, at_ms, statuses])}
      {answers ++ virtual, drop_virtual(errors) ++ virtual_errors}
    else
      result
    end
  end

  @doc "`node_errors` without those of virtual nodes (answered from here instead)."
  @spec drop_virtual([map()]) :: [map()]
  def drop_virtual(errors), do: Enum.reject(errors, &Simulator.virtual?(&1.node))

  defp sample(node, at_ms, statuses \\ nil) do
    {live, incarnation} = live(node)
    rows = Enum.map(live, &row(&1, incarnation, at_ms))
    {seed, index, count} = identity(node)
    rand = :rand.seed_s(:exsss, {seed, index, 3})
    hot = hot_spots(seed, count)
    {atoms, rand} = pick(22_000..30_000, rand)
    {ports, rand} = pick(30..120, rand)
    {util, rand} = pick(8..45, rand)
    {binary, rand} = pick(2_000_000..60_000_000, rand)
    {ets, _rand} = pick(3_000_000..40_000_000, rand)
    {util, run_queue} = if hot[:busy] == index, do: {95, 9}, else: {util, rem(index, 2)}
    ets = if hot[:memory] == index, do: 6_500 * 1024 * 1024 + ets, else: ets

    processes_bytes = rows |> Enum.map(&elem(&1, 1)) |> Enum.sum()
    atom_bytes = atoms * 30
    system_bytes = 38_000_000 + binary + ets + atom_bytes
    total = processes_bytes + system_bytes
    process_count = length(rows)
    top = top_queues(node, rows)
    max_queue = Enum.max([0 | Enum.map(top, & &1.message_queue_len)])
    reductions = live |> Enum.map(& &1.rate) |> Enum.sum()
    at = started_at() + at_ms - @head_start_ms
    statuses = statuses || Fanout.node_statuses()
    non_up = Enum.count(statuses, fn {_, s} -> s not in [:up, :departed] end)

    values = %{
      atom_count: atoms,
      atom_usage_pct: pct(atoms, @atom_limit),
      busy_dist_port_events: 0,
      # Measured by one real node only (CodeDrift.Watch): 0 elsewhere, as here.
      code_drift_modules: 0,
      connectivity: if(non_up == 0, do: 0, else: 1),
      max_message_queue_len: max_queue,
      memory_atom_bytes: atom_bytes,
      memory_binary_bytes: binary,
      memory_ets_bytes: ets,
      memory_processes_bytes: processes_bytes,
      memory_total_bytes: total,
      memory_total_pct: pct(total, @system_memory),
      non_up_nodes: non_up,
      port_count: ports,
      port_usage_pct: pct(ports, @port_limit),
      process_count: process_count,
      process_usage_pct: pct(process_count, @process_limit),
      reductions_per_s: reductions,
      run_queue: run_queue,
      run_queue_per_scheduler: run_queue / @schedulers,
      scheduler_utilization_pct: util * 1.0,
      # The machine (NodeViews.Os): the VM plus 1.5 GiB of other programs;
      # a disk between 20% and 69% full.
      machine_memory_pct: pct(total + 1_536 * 1024 * 1024, @system_memory),
      disk_usage_pct: 20.0 + rem(index * 7, 50)
    }

    %{
      node: node,
      at_ms: at,
      interval_ms: 1_000,
      anomalies: [],
      busy_dist_port: %{events: 0, status: :installed},
      connectivity: %{
        level: values.connectivity,
        node_count: map_size(statuses),
        non_up_nodes: non_up,
        side: :majority,
        status: if(non_up == 0, do: :healthy, else: :degraded)
      },
      cost: %{reductions: 2_400 + rem(index * 37, 400), wall_us: 300 + rem(index * 53, 200)},
      limits: %{
        atom_count: atoms,
        atom_limit: @atom_limit,
        atom_usage_pct: values.atom_usage_pct,
        port_count: ports,
        port_limit: @port_limit,
        port_usage_pct: values.port_usage_pct,
        process_count: process_count,
        process_limit: @process_limit,
        process_usage_pct: values.process_usage_pct
      },
      memory: %{
        atom_bytes: atom_bytes,
        binary_bytes: binary,
        ets_bytes: ets,
        processes_bytes: processes_bytes,
        system_bytes: @system_memory,
        total_bytes: total,
        total_pct: values.memory_total_pct
      },
      message_queues: %{
        last_scan_at_ms: at - rem(at_ms, 10_000),
        processes_scanned: process_count,
        scan_cost_us: 100 + div(process_count, 3),
        status: :ok,
        top: top
      },
      reductions_per_s: reductions,
      schedulers: %{
        dirty_cpu_run_queue: 0,
        dirty_cpu_utilization_pct: 0.0,
        dirty_io_run_queue: 0,
        online: @schedulers,
        run_queue: run_queue,
        run_queue_lengths: [div(run_queue + 1, 2), div(run_queue, 2)],
        run_queue_per_scheduler: values.run_queue_per_scheduler,
        utilization_pct: values.scheduler_utilization_pct
      },
      os: %{
        status: :ok,
        memory_used_pct: values.machine_memory_pct,
        swap_used_pct: 0.0,
        load1: run_queue * 1.0,
        fullest_disk_mount: "/",
        fullest_disk_used_pct: values.disk_usage_pct,
        memory_source: :proc,
        disks_source: :df
      },
      values: values
    }
  end

  defp top_queues(node, rows) do
    rows
    |> Enum.filter(&(elem(&1, 3) > 0))
    |> Enum.sort_by(&(-elem(&1, 3)))
    |> Enum.take(10)
    |> Enum.map(fn row ->
      {id, serial} = Rows.numbers(elem(row, 0))
      name = elem(row, 9)

      {m, f, a} = elem(row, 8)

      %{
        pid: ProcessRef.to_string(%ProcessRef{node: node, id: id, serial: serial}),
        name: if(name == [], do: nil, else: inspect(name)),
        current_function: Exception.format_mfa(m, f, a),
        message_queue_len: elem(row, 3)
      }
    end)
  end

  defp alerts(node, sample) do
    t = thresholds()

    for {metric, levels} <- t.metrics,
        value <- [sample.values[metric]],
        is_number(value),
        alert <- [Alerts.instant(metric, value, levels, node, sample.at_ms)],
        alert != nil do
      {message, remediation} =
        Alerts.describe(metric, alert.severity, value, alert.threshold, sample)

      %{
        alert
        | id: "#{node}/#{metric}/1",
          started_at_ms: started_at(),
          message: message,
          remediation: remediation
      }
    end
    |> Alerts.sort()
  end

  defp monitor_status(node, sample) do
    %{
      base_interval_ms: 1_000,
      baselines_reset_at_ms: nil,
      busy_dist_port: %{status: :installed},
      collectors: %{
        horde_skew: :absent,
        message_queues: %{
          cost_us: sample.message_queues.scan_cost_us,
          last_scan_at_ms: sample.message_queues.last_scan_at_ms,
          min_interval_ms: 10_000,
          period_ms: 10_000,
          processes_scanned: sample.message_queues.processes_scanned,
          reductions: 10 * sample.message_queues.processes_scanned,
          running: false,
          status: :ok
        }
      },
      interval_ms: 1_000,
      last_sample_at_ms: sample.at_ms,
      max_interval_ms: 16_000,
      membership_changes: 0,
      node: node,
      own_cost: %{
        budget: 0.01,
        collectors_fraction: 1.5e-5,
        last_sample_reductions: sample.cost.reductions,
        last_sample_us: sample.cost.wall_us,
        sample_fraction: sample.cost.wall_us / 1_000_000,
        total_fraction: sample.cost.wall_us / 1_000_000 + 1.5e-5,
        typical_sample_us: sample.cost.wall_us
      },
      reason: nil,
      samples_taken: 1 + div(now(), 1_000),
      skipped_collectors: [],
      throttled: false
    }
  end

  defp thresholds do
    ClusterScope.Health.Monitor.thresholds() || Thresholds.defaults()
  catch
    _, _ -> Thresholds.defaults()
  end

  defp pct(part, whole), do: Float.round(part * 100 / whole, 2)

  # ---------------------------------------------------------------------
  # Node facts, build, latency

  @doc "A virtual node's live facts for `node_info` (`ClusterScope.Agent.facts/0`'s shape)."
  @spec local_facts(node()) :: map()
  def local_facts(node) do
    at_ms = now()
    sample = sample(node, at_ms)
    {seed, index, _} = identity(node)
    {uptime, _} = pick(3_600_000..86_400_000, :rand.seed_s(:exsss, {seed, index, 5}))
    m = sample.memory

    %{
      otp_release: List.to_string(:erlang.system_info(:otp_release)),
      cluster_scope_version: ClusterScope.version(),
      uptime_ms: uptime + at_ms,
      process_count: sample.values.process_count,
      process_limit: @process_limit,
      port_count: sample.values.port_count,
      memory_bytes: %{
        total: m.total_bytes,
        processes: m.processes_bytes,
        processes_used: m.processes_bytes,
        system: m.total_bytes - m.processes_bytes,
        atom: m.atom_bytes,
        atom_used: div(m.atom_bytes * 9, 10),
        binary: m.binary_bytes,
        code: 20_000_000,
        ets: m.ets_bytes
      },
      schedulers: @schedulers,
      connected_nodes: Simulator.virtual_nodes() -- [node]
    }
  end

  @doc "A virtual node's build (`ClusterScope.build_info/0`'s shape): this node's versions."
  @spec build_info(node()) :: map()
  def build_info(node), do: %{ClusterScope.build_info() | node: node}

  @doc """
  A virtual node's operation latency histograms, serialized as
  `ClusterScope.Metrics.OperationLatency.serialized/1` gives them
  (uncompressed V2): per operation, a log-normal spread around a median
  typical of that operation (longer on the busy node). Generated once per
  node and cached.
  """
  @spec latency(node()) :: %{String.t() => binary()}
  def latency(node) do
    {seed, index, count} = identity(node)
    slow = if hot_spots(seed, count)[:busy] == index, do: 4, else: 1
    Simulator.cached({:latency, node}, fn -> histograms(seed, index, slow) end)
  end

  @doc false
  # Pure: the histograms of node `index` for `seed` (`slow` multiplies latency).
  @spec histograms(integer(), pos_integer(), pos_integer()) :: %{String.t() => binary()}
  def histograms(seed, index, slow) do
    rand = :rand.seed_s(:exsss, {seed, index, 11})

    @operations
    |> Enum.map_reduce(rand, fn name, rand ->
      {count, rand} = pick(20..400, rand)
      median = slow * median_us(name)
      {values, rand} = Enum.map_reduce(1..count, rand, fn _, r -> lognormal(median, r) end)
      {:ok, hist} = Histogram.new()
      {:ok, _} = Histogram.record_batch(hist, values)
      {:ok, bin} = Histogram.serialize(hist, compressed: false)
      {{name, bin}, rand}
    end)
    |> elem(0)
    |> Map.new()
  end

  defp median_us("cluster_health"), do: 1_800
  defp median_us("process_list"), do: 9_000
  defp median_us("process_distribution"), do: 6_000
  defp median_us("operation_metrics"), do: 2_500
  defp median_us("trace_process"), do: 4_000
  defp median_us("create_sandbox"), do: 12_000
  defp median_us("kill_process"), do: 1_100
  defp median_us(_), do: 300

  # exp(N(ln median, 0.6)): a long right tail, as latency has.
  defp lognormal(median, rand) do
    {z, rand} = :rand.normal_s(rand)
    {max(round(median * :math.exp(0.6 * z)), 1), rand}
  end

  @doc """
  `{answers, node_errors}` of the latency fan-out with the virtual nodes'
  histograms added when `active?/0` (only `node` when given).
  """
  @spec add_latency({list(), list()}, node() | nil) :: {list(), list()}
  def add_latency({answers, errors} = result, only) do
    if active?() do
      {up, virtual_errors} = targets(only)
      {answers ++ Enum.map(up, &{&1, latency(&1)}), drop_virtual(errors) ++ virtual_errors}
    else
      result
    end
  end

  # ---------------------------------------------------------------------

  # The seed, the node's index (from its name sim_<i>@simulated) and the
  # node count.
  defp identity(node) do
    meta = Simulator.meta() || %{seed: 1, count: 1}

    index =
      with "sim_" <> rest <- Atom.to_string(node),
           {index, "@simulated"} <- Integer.parse(rest) do
        index
      else
        _ -> 1
      end

    {meta.seed, index, meta.count}
  end

  defp started_at do
    case Simulator.meta() do
      %{started_at_ms: at} -> at
      nil -> 0
    end
  end
end
