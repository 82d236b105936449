defmodule ClusterScope.Cluster.Libcluster do
  @moduledoc """
  What ClusterScope knows of libcluster on this node: its telemetry, its
  topologies, the nodes each one expects, has connected or fails to reach.
  libcluster is optional: nothing here needs it to compile, and every
  libcluster or `:telemetry` call goes through `apply/3`.

  ## Telemetry, whatever the start order

  libcluster reports `[:libcluster, :connect_node | :disconnect_node,
  :ok | :error]` through `:telemetry`. Without Hex, `:cluster_scope`'s
  application does not list `:telemetry`, so ClusterScope may start before
  it, or run where it is loaded and never started; attaching then fails and
  a libcluster disconnect would be blamed on `erlang:disconnect_node/1`.
  This server attaches only when the `:telemetry` application runs
  (`ClusterScope.Telemetry.running?/0`: two BIFs), checks every 250 ms
  until it does (every second after the first 30 s). Once attached it
  monitors the owner of telemetry's handler table (a restarted
  `:telemetry` loses its handlers: it attaches again as soon as the new
  one runs) and checks every 5 s that its handler is still there (someone
  may detach it). It never attaches
  to, or emits into, a `:telemetry` that is not running. It detaches when
  it stops.

  The handler runs in libcluster's strategy process and only casts: the
  event to `ClusterScope.Cluster.State` (which attributes the nodedown that
  follows a libcluster disconnect, and raises a suspect event for a failed
  connect) and to this server, which keeps per topology and node the last
  connect, the last disconnect and the last error with the count of
  consecutive failures (at most #{1_000} pairs; the oldest goes first), and
  learns the `Cluster.Supervisor` of each strategy process it hears from.

  ## Topologies

  `view/0` lists the topologies from two sources:

    * the host's configuration, `config :libcluster, topologies: [...]`
      (libcluster has no application of its own: the host passes it to a
      `Cluster.Supervisor`); a malformed entry is listed with an error;
    * the running `Cluster.Supervisor`s: the registered processes started
      by `Cluster.Supervisor`, and the supervisors of the strategy processes
      whose events arrived here (so an unnamed one shows once it reported).
      Their children are the topologies, and the child specs carry each
      strategy's configuration.

  For each: the strategy, whether it runs, the nodes it expects where the
  strategy makes that knowable (`Cluster.Strategy.Epmd`: its `hosts`;
  `Cluster.Strategy.LocalEpmd`: the names in this host's epmd; the other
  strategies discover nodes at run time: `expected` is nil with a note),
  the expected or topology-connected nodes connected now, the expected
  ones `missing`, and the ones `failing` with their last error.

  Cost of `view/0`: one call to this server, a scan of the registered
  names (a `Process.info/2` of the dictionary each), and two calls to each
  `Cluster.Supervisor` per topology (`which_children`, `get_childspec`)
  with a #{500} ms timeout each: a stuck supervisor costs the view its
  timeout, never a crash.
  """

  use GenServer

  @handler_id "cluster_scope_libcluster"
  @events [
    [:libcluster, :connect_node, :ok],
    [:libcluster, :connect_node, :error],
    [:libcluster, :disconnect_node, :ok],
    [:libcluster, :disconnect_node, :error]
  ]
  @fast_wait_ms 250
  @slow_wait_ms 1_000
  @fast_for_ms 30_000
  @check_ms 5_000
  @max_entries 1_000
  @max_supervisors 64
  @call_timeout 500

  @typedoc "How this node hears libcluster's telemetry."
  @type telemetry_status :: :attached | :waiting | :not_running

  # -- API -----------------------------------------------------------------------

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "Whether libcluster's code is loadable on this node."
  @spec available?() :: boolean()
  def available?, do: Code.ensure_loaded?(Cluster.Strategy)

  @doc """
  `:attached` (libcluster's events arrive here), `:waiting` (`:telemetry`
  is not running yet) or `:not_running` (this server is not running).
  One call with a #{@call_timeout} ms timeout.
  """
  @spec telemetry_status() :: telemetry_status()
  def telemetry_status do
    GenServer.call(__MODULE__, :telemetry_status, @call_timeout)
  catch
    :exit, _ -> :not_running
  end

  @doc false
  # The :telemetry handler. Runs in libcluster's strategy process: casts
  # only, never raises.
  def handle_event([:libcluster, action, result] = event, measurements, metadata, config) do
    ClusterScope.Cluster.State.handle_libcluster(event, measurements, metadata, config)
    GenServer.cast(__MODULE__, {:event, action, result, metadata, self()})
  catch
    _, _ -> :ok
  end

  @doc """
  The libcluster view of this node: `%{available: false, reason: text}`
  without libcluster; otherwise `available: true`, the `telemetry` status
  and `topologies` (see the module doc for each topology's fields).
  """
  @spec view() :: map()
  def view do
    if available?() do
      known = known()

      %{
        available: true,
        telemetry: known.telemetry,
        topologies: topologies(known)
      }
    else
      %{
        available: false,
        reason:
          "libcluster is not loaded on this node (add {:libcluster, \"~> 3.5\"} to the host's deps)"
      }
    end
  end

  @doc """
  The health of the libcluster view: `:absent` without libcluster,
  `:degraded` when a topology misses an expected node or fails to connect
  one, `:healthy` otherwise; with the `missing` and `failing` pairs.
  """
  @spec health(map()) :: map()
  def health(view \\ view())

  def health(%{available: false}), do: %{status: :absent, missing: [], failing: []}

  def health(%{topologies: topologies} = view) do
    missing = for t <- topologies, n <- t.missing, do: %{topology: t.name, node: n}
    failing = for t <- topologies, f <- t.failing, do: Map.put(f, :topology, t.name)

    %{
      status: if(missing == [] and failing == [], do: :healthy, else: :degraded),
      telemetry: view.telemetry,
      topology_count: length(topologies),
      missing: missing,
      failing: failing
    }
  end

  # -- server ----------------------------------------------------------------------

  @impl true
  def init(_opts) do
    Process.flag(:trap_exit, true)

    state = %{
      attached: false,
      table_owner: nil,
      started_ms: now(),
      entries: %{},
      supervisors: %{},
      strategies: %{}
    }

    {:ok, attach(state)}
  end

  @impl true
  def handle_call(:telemetry_status, _from, state),
    do: {:reply, if(state.attached, do: :attached, else: :waiting), state}

  def handle_call(:known, _from, state) do
    {:reply,
     %{
       telemetry: if(state.attached, do: :attached, else: :waiting),
       entries: state.entries,
       supervisors: Map.keys(state.supervisors)
     }, state}
  end

  @impl true
  def handle_cast({:event, action, result, meta, strategy}, state) when is_map(meta) do
    state = learn_supervisor(state, strategy)

    case {meta[:topology], meta[:node]} do
      {topology, node} when is_atom(topology) and is_atom(node) ->
        {:noreply, record(state, {topology, node}, action, result, meta)}

      _ ->
        {:noreply, state}
    end
  end

  def handle_cast(_other, state), do: {:noreply, state}

  @impl true
  def handle_info(:attach, state), do: {:noreply, attach(state)}

  def handle_info(:check, state) do
    if state.attached and still_attached?() do
      Process.send_after(self(), :check, @check_ms)
      {:noreply, state}
    else
      {:noreply, attach(%{state | attached: false})}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, _reason}, %{table_owner: ref} = state),
    do: {:noreply, attach(%{state | attached: false, table_owner: nil})}

  def handle_info({:DOWN, ref, :process, _pid, _reason}, state) do
    supervisors = for {sup, r} <- state.supervisors, r != ref, into: %{}, do: {sup, r}
    {:noreply, %{state | supervisors: supervisors}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{attached: true}) do
    if ClusterScope.Telemetry.running?(), do: apply(:telemetry, :detach, [@handler_id])
    :ok
  catch
    _, _ -> :ok
  end

  def terminate(_reason, _state), do: :ok

  # -- attaching -----------------------------------------------------------------------

  defp attach(state) do
    attached =
      ClusterScope.Telemetry.running?() and
        apply(:telemetry, :attach_many, [@handler_id, @events, &__MODULE__.handle_event/4, nil]) in [
          :ok,
          {:error, :already_exists}
        ]

    cond do
      attached ->
        Process.send_after(self(), :check, @check_ms)
        %{state | attached: true, table_owner: watch_table(state.table_owner)}

      now() - state.started_ms < @fast_for_ms ->
        Process.send_after(self(), :attach, @fast_wait_ms)
        state

      true ->
        Process.send_after(self(), :attach, @slow_wait_ms)
        state
    end
  catch
    # :telemetry stopped between the check and the call.
    _, _ ->
      Process.send_after(self(), :attach, @fast_wait_ms)
      %{state | attached: false}
  end

  # The handler table dies with :telemetry's application: its owner's DOWN
  # is the moment to wait for the next one.
  defp watch_table(nil) do
    case :ets.info(:telemetry_handler_table, :owner) do
      owner when is_pid(owner) -> Process.monitor(owner)
      _ -> nil
    end
  end

  defp watch_table(ref), do: ref

  defp still_attached? do
    ClusterScope.Telemetry.running?() and
      Enum.any?(
        apply(:telemetry, :list_handlers, [[:libcluster, :disconnect_node, :ok]]),
        &(&1.id == @handler_id)
      )
  catch
    _, _ -> false
  end

  # -- what the events say ----------------------------------------------------------------

  defp record(state, key, action, result, meta) do
    at = System.system_time(:millisecond)
    entry = Map.get(state.entries, key, %{failures: 0, last_error: nil})

    entry =
      case {action, result} do
        {:connect_node, :ok} ->
          Map.merge(entry, %{failures: 0, connected_at_ms: at, connected: true})

        {:disconnect_node, :ok} ->
          Map.merge(entry, %{disconnected_at_ms: at, connected: false})

        {action, :error} when action in [:connect_node, :disconnect_node] ->
          error = %{
            action: if(action == :connect_node, do: :connect, else: :disconnect),
            reason: reason(meta[:reason]),
            at_ms: at
          }

          %{entry | failures: entry.failures + 1, last_error: error}

        _ ->
          entry
      end

    entries = Map.put(state.entries, key, Map.put(entry, :updated_at_ms, at))
    %{state | entries: bound(entries)}
  end

  defp bound(entries) when map_size(entries) <= @max_entries, do: entries

  defp bound(entries) do
    {oldest, _} = Enum.min_by(entries, fn {_key, e} -> e.updated_at_ms end)
    Map.delete(entries, oldest)
  end

  defp reason(reason) when is_atom(reason), do: reason
  defp reason(reason) when is_binary(reason), do: String.slice(reason, 0, 200)
  defp reason(reason), do: inspect(reason, limit: 10, printable_limit: 200)

  # The supervisor of a strategy process: the first of its ancestors, kept
  # only if it is a Cluster.Supervisor (the view calls it: an arbitrary
  # process would not understand which_children).
  defp learn_supervisor(state, strategy) when is_pid(strategy) do
    if Map.has_key?(state.strategies, strategy) or map_size(state.strategies) >= @max_supervisors do
      state
    else
      state = put_in(state.strategies[strategy], true)

      case ancestor(strategy) do
        nil ->
          state

        sup ->
          if Map.has_key?(state.supervisors, sup) or
               map_size(state.supervisors) >= @max_supervisors,
             do: state,
             else: put_in(state.supervisors[sup], Process.monitor(sup))
      end
    end
  end

  defp learn_supervisor(state, _other), do: state

  defp ancestor(pid) do
    with {:dictionary, dict} <- Process.info(pid, :dictionary),
         [first | _] <- Keyword.get(dict, :"$ancestors", []),
         sup when is_pid(sup) <- if(is_atom(first), do: Process.whereis(first), else: first),
         true <- cluster_supervisor?(sup) do
      sup
    else
      _ -> nil
    end
  end

  # -- the view -----------------------------------------------------------------------------

  defp known do
    GenServer.call(__MODULE__, :known, @call_timeout)
  catch
    :exit, _ -> %{telemetry: :not_running, entries: %{}, supervisors: []}
  end

  defp topologies(known) do
    configured = configured()
    running = running(known.supervisors)
    connected = MapSet.new(Node.list(:connected))
    names = Enum.uniq(Enum.map(configured, & &1.name) ++ Enum.map(running, & &1.name))

    for name <- names do
      from_config = Enum.find(configured, &(&1.name == name))
      run = Enum.find(running, &(&1.name == name))
      describe(name, from_config, run, known.entries, connected)
    end
  end

  defp describe(name, from_config, run, entries, connected) do
    strategy = (run && run.strategy) || (from_config && from_config.strategy)
    config = (run && run.config) || (from_config && from_config.config) || []
    {expected, source} = expected(strategy, config)
    pairs = for {{^name, node}, entry} <- entries, do: {node, entry}

    by_topology = for {node, %{connected: true}} <- pairs, do: node
    candidates = Enum.uniq((expected || []) ++ by_topology) -- [node()]
    connected_now = Enum.filter(candidates, &MapSet.member?(connected, &1))
    missing = if expected, do: (expected -- [node()]) -- connected_now, else: []

    failing =
      for {node, %{failures: f, last_error: error}} <- pairs,
          f > 0,
          not MapSet.member?(connected, node) do
        Map.merge(error, %{node: node, failures: f})
      end

    %{
      name: name,
      strategy: strategy && inspect(strategy),
      sources: Enum.reject([from_config && :config, run && :supervisor], &(&1 in [nil, false])),
      running: run != nil and run.pid != nil,
      supervisor: run && run.supervisor,
      expected: expected && Enum.sort(expected),
      expected_source: source,
      connected: Enum.sort(connected_now),
      missing: Enum.sort(missing),
      failing: Enum.sort_by(failing, & &1.node)
    }
    |> maybe_put(:config_error, from_config && from_config[:error])
  end

  defp maybe_put(map, _key, nil), do: map
  defp maybe_put(map, key, value), do: Map.put(map, key, value)

  defp expected(Cluster.Strategy.Epmd, config) do
    case Keyword.get(config, :hosts, []) do
      hosts when is_list(hosts) -> {Enum.filter(hosts, &is_atom/1), "hosts of the Epmd strategy"}
      _ -> {nil, "the Epmd strategy's hosts are not a list"}
    end
  end

  defp expected(Cluster.Strategy.LocalEpmd, _config) do
    case {:erl_epmd.names(), String.split(Atom.to_string(node()), "@")} do
      {{:ok, names}, [_, host]} ->
        # Names of nodes that never existed here are kept as text: no atom
        # is created from epmd's answer.
        nodes =
          for {name, _port} <- names do
            text = "#{name}@#{host}"

            try do
              String.to_existing_atom(text)
            rescue
              ArgumentError -> text
            end
          end

        {nodes, "names in this host's epmd (LocalEpmd)"}

      _ ->
        {nil, "this host's epmd did not answer"}
    end
  catch
    _, _ -> {nil, "this host's epmd did not answer"}
  end

  defp expected(nil, _config), do: {nil, "the strategy is unknown"}

  defp expected(_strategy, _config),
    do: {nil, "not knowable: the strategy discovers nodes at run time"}

  # config :libcluster, topologies: [name: [strategy: Mod, config: [...]], ...]
  defp configured do
    case Application.get_env(:libcluster, :topologies) do
      nil ->
        []

      topologies when is_list(topologies) ->
        topologies
        |> Enum.take(@max_supervisors)
        |> Enum.map(&configured_entry/1)
        |> Enum.reject(&is_nil/1)

      _other ->
        [
          %{
            name: :"(config)",
            strategy: nil,
            config: [],
            error: "config :libcluster, :topologies is not a keyword list"
          }
        ]
    end
  end

  defp configured_entry({name, spec}) when is_atom(name) and is_list(spec) do
    strategy = Keyword.get(spec, :strategy)
    config = Keyword.get(spec, :config, [])

    cond do
      not is_atom(strategy) or strategy == nil ->
        %{name: name, strategy: nil, config: [], error: "no :strategy module"}

      not is_list(config) ->
        %{name: name, strategy: strategy, config: [], error: ":config is not a keyword list"}

      true ->
        %{name: name, strategy: strategy, config: config}
    end
  rescue
    _ -> %{name: name, strategy: nil, config: [], error: "malformed topology"}
  end

  defp configured_entry(_other), do: nil

  defp running(learnt) do
    (registered_supervisors() ++ learnt)
    |> Enum.uniq()
    |> Enum.take(@max_supervisors)
    |> Enum.flat_map(&children/1)
  end

  defp registered_supervisors do
    Process.registered()
    |> Enum.map(&Process.whereis/1)
    |> Enum.filter(&(is_pid(&1) and cluster_supervisor?(&1)))
  end

  defp cluster_supervisor?(pid) do
    case Process.info(pid, :dictionary) do
      {:dictionary, dict} ->
        Keyword.get(dict, :"$initial_call") in [
          {:supervisor, Cluster.Supervisor, 1},
          {Cluster.Supervisor, :init, 1}
        ]

      nil ->
        false
    end
  end

  defp children(sup) do
    label = supervisor_label(sup)

    for {id, pid, _type, _mods} <- GenServer.call(sup, :which_children, @call_timeout),
        is_atom(id) do
      {strategy, config} = child_config(sup, id)

      %{
        name: id,
        pid: if(is_pid(pid), do: pid),
        strategy: strategy,
        config: config,
        supervisor: label
      }
    end
  catch
    :exit, _ -> []
  end

  defp child_config(sup, id) do
    case GenServer.call(sup, {:get_childspec, id}, @call_timeout) do
      {:ok, %{start: {strategy, _fun, [[%{config: config}] | _]}}} when is_list(config) ->
        {strategy, config}

      {:ok, %{start: {strategy, _fun, _args}}} ->
        {strategy, []}

      _ ->
        {nil, []}
    end
  catch
    :exit, _ -> {nil, []}
  end

  defp supervisor_label(pid) do
    case Process.info(pid, :registered_name) do
      {:registered_name, name} when is_atom(name) -> inspect(name)
      _ -> inspect(pid)
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
end
