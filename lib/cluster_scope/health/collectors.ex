defmodule ClusterScope.Health.Collectors do
  @moduledoc """
  What the health monitor (`ClusterScope.Health.Monitor`) reads from the VM.

  The essential collectors run in the monitor at every sample and cost tens
  of microseconds together (see the monitor's documentation for the
  figures). The non-essential ones run in a separate, low-priority process,
  at most every 10 s, and are the first to be skipped when the monitor
  protects the node:

    * **message queues** (`scan/1`) - `:erlang.processes/0`, then
      `Process.info(pid, :message_queue_len)` for each process, in chunks
      of 5,000 with a yield between chunks, keeping the 10 longest queues
      (a list of 10, so memory does not grow with the process count).
      Measured on a 2-core x86-64 with 100,000 processes: about 4 ms for
      `:erlang.processes/0` and 19-25 ms for the lengths, about 30 ms and
      430,000 reductions in all, or 0.3% of one core at one scan per 10 s.
      Between scans the monitor re-reads only the queues of those 10
      processes at every sample.
    * **Horde findings** (`horde/0`), only when Horde is loaded: skew over
      live members, duplicates, lost children and members not connected of
      every Horde registry and supervisor running here, read from this
      node's replicas with a deadline per read (see
      `ClusterScope.Horde.Inspect`: it costs in proportion to the
      children and entries of the cluster).
    * **the machine** (`os/0`): memory in use and the fullest file system
      (`ClusterScope.NodeViews.Os.health_values/0`: a few `/proc` reads and
      one `df` run, a few milliseconds).
  """

  import Bitwise, only: [<<<: 2]

  @chunk 5_000
  @top 10

  # -- essential, in the monitor ---------------------------------------------------

  @doc """
  The memory available to this VM in bytes: the smaller of the machine's
  (`/proc/meminfo`) and the cgroup's limit (v2 `memory.max`, v1
  `memory.limit_in_bytes`), or `nil` where neither can be read.
  """
  @spec system_memory() :: pos_integer() | nil
  def system_memory do
    [
      meminfo(),
      cgroup("/sys/fs/cgroup/memory.max"),
      cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    ]
    |> Enum.filter(&(is_integer(&1) and &1 > 0))
    |> Enum.min(fn -> nil end)
  end

  defp meminfo do
    with {:ok, text} <- File.read("/proc/meminfo"),
         [_, kb] <- Regex.run(~r/^MemTotal:\s+(\d+)\s+kB/m, text) do
      String.to_integer(kb) * 1024
    else
      _ -> nil
    end
  end

  defp cgroup(path) do
    with {:ok, text} <- File.read(path),
         {n, _} <- Integer.parse(String.trim(text)),
         # v1 writes a huge number for "no limit".
         true <- n < 1 <<< 60 do
      n
    else
      _ -> nil
    end
  end

  @doc "The memory section of a sample."
  @spec memory(pos_integer() | nil) :: map()
  def memory(system_bytes) do
    m = :erlang.memory([:total, :processes, :binary, :ets, :atom])

    %{
      total_bytes: m[:total],
      processes_bytes: m[:processes],
      binary_bytes: m[:binary],
      ets_bytes: m[:ets],
      atom_bytes: m[:atom],
      system_bytes: system_bytes,
      total_pct: if(system_bytes, do: pct(m[:total], system_bytes))
    }
  end

  @doc "Counts and limits of processes, ports and atoms."
  @spec limits() :: map()
  def limits do
    {pc, pl} = {:erlang.system_info(:process_count), :erlang.system_info(:process_limit)}
    {oc, ol} = {:erlang.system_info(:port_count), :erlang.system_info(:port_limit)}
    {ac, al} = {:erlang.system_info(:atom_count), :erlang.system_info(:atom_limit)}

    %{
      process_count: pc,
      process_limit: pl,
      process_usage_pct: pct(pc, pl),
      port_count: oc,
      port_limit: ol,
      port_usage_pct: pct(oc, ol),
      atom_count: ac,
      atom_limit: al,
      atom_usage_pct: pct(ac, al)
    }
  end

  @doc """
  Scheduler wall time: `:erlang.statistics(:scheduler_wall_time)`, which
  needs `:erlang.system_flag(:scheduler_wall_time, true)` (the monitor turns
  it on for as long as it lives). A map `id => {active, total}`, or `nil`
  when the flag is off.
  """
  @spec scheduler_wall_time() :: %{pos_integer() => {integer(), integer()}} | nil
  def scheduler_wall_time do
    case :erlang.statistics(:scheduler_wall_time) do
      :undefined -> nil
      list -> Map.new(list, fn {id, active, total} -> {id, {active, total}} end)
    end
  end

  @doc """
  Utilisation in % between two `scheduler_wall_time/0` readings, over the
  scheduler ids in `ids` (busy time / elapsed time, summed over them).
  """
  @spec utilization(map() | nil, map() | nil, Enumerable.t()) :: float() | nil
  def utilization(prev, now, ids) when is_map(prev) and is_map(now) do
    {active, total} =
      Enum.reduce(ids, {0, 0}, fn id, {a, t} ->
        case {prev[id], now[id]} do
          {{a0, t0}, {a1, t1}} -> {a + a1 - a0, t + t1 - t0}
          _ -> {a, t}
        end
      end)

    if total > 0, do: Float.round(min(active / total, 1.0) * 100, 1)
  end

  def utilization(_prev, _now, _ids), do: nil

  @doc "Run queues: normal ones (per scheduler), dirty CPU and dirty IO."
  @spec run_queues() :: map()
  def run_queues do
    online = :erlang.system_info(:schedulers_online)
    normal = :erlang.system_info(:schedulers)
    all = :erlang.statistics(:run_queue_lengths_all)
    {per_scheduler, dirty} = Enum.split(all, normal)
    total = Enum.sum(per_scheduler)

    %{
      run_queue: total,
      run_queue_per_scheduler: Float.round(total / online, 2),
      run_queue_lengths: per_scheduler,
      dirty_cpu_run_queue: Enum.at(dirty, 0, 0),
      dirty_io_run_queue: Enum.at(dirty, 1, 0),
      online: online
    }
  end

  @doc """
  Connectivity from `ClusterScope.Cluster.State.topology/0`: the
  classification's status and side, a level (0 healthy, 1 any other
  classification, 2 split on the minority or tie side) and the number of
  known nodes that are neither up nor departed. `%{status: :unavailable, ...}` when the state
  does not answer.
  """
  @spec connectivity() :: map()
  def connectivity do
    topology = ClusterScope.Cluster.State.topology()
    c = topology.classification

    level =
      cond do
        ClusterScope.Cluster.State.split_here?(c) -> 2
        c.status != :healthy -> 1
        true -> 0
      end

    %{
      status: c.status,
      side: c[:side],
      level: level,
      node_count: length(topology.nodes),
      non_up_nodes: Enum.count(topology.nodes, &(&1.status not in [:up, :departed]))
    }
  catch
    kind, reason ->
      %{
        status: :unavailable,
        side: nil,
        level: nil,
        node_count: nil,
        non_up_nodes: nil,
        error: "#{kind}: #{inspect(reason, limit: 5)}"
      }
  end

  # -- message queues ----------------------------------------------------------------

  @doc """
  Scans every process's message queue length (see the moduledoc) and
  returns `%{top: [...], scanned: n, cost_us: wall time, reductions: n}`.
  Runs in the calling process; the monitor runs it in a low-priority one.
  """
  @spec scan_message_queues() :: map()
  def scan_message_queues do
    started = System.monotonic_time(:microsecond)
    {:reductions, r0} = Process.info(self(), :reductions)
    {top, scanned} = scan(:erlang.processes(), [], 0, 0, 0)
    top = top |> Enum.reverse() |> Enum.map(fn {len, pid} -> describe(pid, len) end)
    {:reductions, r1} = Process.info(self(), :reductions)

    %{
      top: Enum.reject(top, &is_nil/1),
      scanned: scanned,
      cost_us: System.monotonic_time(:microsecond) - started,
      reductions: r1 - r0
    }
  end

  # `top` is ascending by length, at most @top long; `min` is its smallest
  # length once full (0 before).
  defp scan([], top, _size, _min, scanned), do: {top, scanned}

  defp scan([pid | rest], top, size, min, scanned) do
    if rem(scanned + 1, @chunk) == 0, do: :erlang.yield()

    case Process.info(pid, :message_queue_len) do
      {:message_queue_len, len} when len > 0 and (size < @top or len > min) ->
        top = insert({len, pid}, top)
        {top, size} = if size >= @top, do: {tl(top), size}, else: {top, size + 1}
        min = if size >= @top, do: elem(hd(top), 0), else: 0
        scan(rest, top, size, min, scanned + 1)

      _ ->
        scan(rest, top, size, min, scanned + 1)
    end
  end

  defp insert(entry, []), do: [entry]
  defp insert({len, _} = entry, [{l, _} | _] = list) when len <= l, do: [entry | list]
  defp insert(entry, [head | rest]), do: [head | insert(entry, rest)]

  @doc """
  Re-reads the queue lengths of the processes in `top` (from a scan);
  drops those that exited. Longest first.
  """
  @spec refresh_top([map()]) :: [map()]
  def refresh_top(top) do
    top
    |> Enum.flat_map(fn entry ->
      case Process.info(entry.local_pid, :message_queue_len) do
        {:message_queue_len, len} -> [%{entry | message_queue_len: len}]
        nil -> []
      end
    end)
    |> Enum.sort_by(& &1.message_queue_len, :desc)
  end

  defp describe(pid, len) do
    case Process.info(pid, [:registered_name, :current_function]) do
      nil ->
        nil

      info ->
        %{
          pid: ClusterScope.ProcessRef.to_string(pid),
          local_pid: pid,
          name: name(info[:registered_name]),
          current_function: mfa(info[:current_function]),
          message_queue_len: len
        }
    end
  end

  defp name([]), do: nil
  defp name(name) when is_atom(name), do: inspect(name)
  defp name(_), do: nil

  defp mfa({m, f, a}), do: Exception.format_mfa(m, f, a)
  defp mfa(_), do: nil

  # -- Horde -------------------------------------------------------------------------

  @doc """
  Horde findings of this node, only when Horde is loaded: every
  `Horde.Registry` and `Horde.DynamicSupervisor` running here, read through
  `ClusterScope.Horde.Inspect.local_summary/1` (each read in a process of
  its own with a deadline, from this node's Horde processes and replicas
  only: never `which_children/1` or `count_children/1`, which make the
  supervisor call every member and freeze it while one is frozen), and the
  values the monitor compares with thresholds
  (`ClusterScope.Horde.Findings.values/1`): `horde_skew` over live members,
  `horde_duplicates`, `horde_lost_children`, `horde_members_not_connected`.
  `max_skew` is `values.horde_skew`. `nil` when Horde is not loaded.

  Cost: see `ClusterScope.Horde.Inspect` (proportional to the children and
  entries of the cluster, as replicated here); bounded by the deadline of
  each read.
  """
  @spec horde() :: map() | nil
  def horde do
    if Code.ensure_loaded?(Horde.DynamicSupervisor) do
      summary = ClusterScope.Horde.Inspect.local_summary()
      values = ClusterScope.Horde.Findings.values(summary)

      summary
      |> Map.delete(:node)
      |> Map.merge(%{max_skew: values.horde_skew, values: values})
    end
  catch
    kind, reason ->
      %{
        supervisors: [],
        registries: [],
        max_skew: nil,
        values: ClusterScope.Horde.Findings.values(nil),
        error: "#{kind}: #{inspect(reason, limit: 5)}"
      }
  end

  defp pct(_n, 0), do: nil
  defp pct(n, d), do: Float.round(n * 100 / d, 2)

  @doc """
  The machine's values for thresholds (`machine_memory_pct`,
  `disk_usage_pct`) and the sample's `os` summary, from
  `ClusterScope.NodeViews.Os.health_values/0`; `nil` if the read failed.
  """
  @spec os() :: %{values: map(), summary: map()} | nil
  def os do
    ClusterScope.NodeViews.Os.health_values()
  rescue
    _ -> nil
  end
end
