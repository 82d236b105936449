defmodule ClusterScope.Test.HordeNode do
  @moduledoc false
  # Runs on peers (through ClusterScope.Test.Cluster.call over standard
  # I/O): starts real Horde registries and supervisors and measures them.
  # Horde is called through apply/3 so this compiles without it.

  @registry ClusterScope.Test.HReg
  @supervisor ClusterScope.Test.HSup
  @explicit ClusterScope.Test.HSupExplicit

  def registry, do: @registry
  def supervisor, do: @supervisor
  def explicit, do: @explicit

  @doc """
  Starts :horde, a registry and a supervisor with `members: :auto`, and a
  supervisor with explicit members (set later with `set_explicit/1`), in a
  process that outlives the call.
  """
  def start(opts \\ []) do
    {:ok, _} = Application.ensure_all_started(:horde)
    parent = self()
    redistribution = Keyword.get(opts, :process_redistribution, :passive)

    spawn(fn ->
      children = [
        {apply(Horde.Registry, :child_spec, [[name: @registry, keys: :unique, members: :auto]]),
         []},
        {apply(Horde.DynamicSupervisor, :child_spec, [
           [
             name: @supervisor,
             strategy: :one_for_one,
             members: :auto,
             process_redistribution: redistribution
           ]
         ]), []},
        {apply(Horde.DynamicSupervisor, :child_spec, [
           [name: @explicit, strategy: :one_for_one, members: [@explicit]]
         ]), []}
      ]

      {:ok, sup} =
        Supervisor.start_link(Enum.map(children, &elem(&1, 0)),
          strategy: :one_for_one,
          name: ClusterScope.Test.HordeRoot
        )

      send(parent, {:started, sup})
      Process.sleep(:infinity)
    end)

    receive do
      {:started, _} -> :ok
    after
      10_000 -> {:error, :not_started}
    end
  end

  @doc "Whether an atom with this text exists here (without making one)."
  def atom_exists?(text) do
    _ = String.to_existing_atom(text)
    true
  rescue
    ArgumentError -> false
  end

  @doc "Sets the explicit supervisor's members to these nodes."
  def set_explicit(nodes) do
    apply(Horde.Cluster, :set_members, [@explicit, Enum.map(nodes, &{@explicit, &1})])
  end

  @doc "Starts `count` named workers through the :auto supervisor from this node."
  def start_workers(prefix, count) do
    for i <- 1..count do
      key = "#{prefix}-#{i}"

      spec = %{
        id: key,
        start: {ClusterScope.Test.HordeWorker, :start_link, [key]},
        restart: :transient
      }

      {:ok, pid} = apply(Horde.DynamicSupervisor, :start_child, [@supervisor, spec])
      pid
    end
  end

  @doc "The registry's count and the supervisor's children as Horde's public API says."
  def counts do
    %{
      registry: apply(Horde.Registry, :count, [@registry]),
      children: length(apply(Horde.DynamicSupervisor, :which_children, [@supervisor]))
    }
  end

  @doc """
  Calls `Horde.Cluster.members/1` of the :auto supervisor back to back for
  `ms` and returns the latencies in microseconds (a call that fails counts
  its time until the failure).
  """
  def members_latencies(ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    loop_latency(deadline, [])
  end

  defp loop_latency(deadline, acc) do
    if System.monotonic_time(:millisecond) >= deadline do
      Enum.reverse(acc)
    else
      t0 = System.monotonic_time(:microsecond)

      try do
        apply(Horde.Cluster, :members, [@supervisor])
      catch
        :exit, _ -> :timeout
      end

      dt = System.monotonic_time(:microsecond) - t0
      Process.sleep(5)
      loop_latency(deadline, [dt | acc])
    end
  end

  @doc "Starts the unsafe scan (a direct which_children) in a process of its own."
  def spawn_unsafe_scan do
    spawn(fn ->
      try do
        apply(Horde.DynamicSupervisor, :which_children, [@supervisor])
      catch
        _, _ -> :ok
      end
    end)

    :ok
  end

  @doc "Runs ClusterScope's Horde scans back to back for `ms` in a process; returns at once."
  def spawn_clusterscope_scans(ms) do
    spawn(fn ->
      deadline = System.monotonic_time(:millisecond) + ms
      scan_loop(deadline)
    end)

    :ok
  end

  defp scan_loop(deadline) do
    if System.monotonic_time(:millisecond) < deadline do
      ClusterScope.Health.Collectors.horde()
      ClusterScope.run("horde_supervisor_inspect", %{"supervisor" => inspect(@supervisor)})
      scan_loop(deadline)
    end
  end

  @doc "Times one local Horde summary (ClusterScope's health scan) in ms."
  def timed_scan do
    t0 = System.monotonic_time(:millisecond)
    summary = ClusterScope.Horde.Inspect.local_summary()
    {System.monotonic_time(:millisecond) - t0, summary}
  end
end

defmodule ClusterScope.Test.HordeWorker do
  @moduledoc false
  # A worker named in the test Horde registry. It traps exits, as Horde's
  # documentation recommends for graceful shutdown: a name conflict's exit
  # signal then reaches it as a message and it keeps running, unnamed.
  use GenServer

  def start_link(key) do
    GenServer.start_link(__MODULE__, key,
      name: {:via, Horde.Registry, {ClusterScope.Test.HReg, key}}
    )
  end

  @impl true
  def init(key) do
    Process.flag(:trap_exit, true)
    {:ok, key}
  end

  @impl true
  def handle_info(_msg, key), do: {:noreply, key}
end
