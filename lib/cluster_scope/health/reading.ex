defmodule ClusterScope.Health.Reading do
  @moduledoc """
  What one health sample reads from this node, and the flat metric values
  alerts and baselines are computed from.

  `take/3` reads only cheap VM counters (memory, limits, run queues,
  scheduler wall time, reductions, this node's connectivity): tens of
  microseconds, no walk of processes, so the monitor can call it every
  interval. The expensive readings (message queues, Horde) come from
  `ClusterScope.Health.Background`. `values/3` is pure.
  """

  alias ClusterScope.Health.Collectors

  @typedoc "The previous reading's counters, for rates."
  @type prev :: %{at_us: integer(), swt: term(), reductions: non_neg_integer() | nil}

  @doc "The counters a first rate is computed from."
  @spec initial() :: prev()
  def initial do
    {reductions, _} = :erlang.statistics(:reductions)

    %{
      at_us: System.monotonic_time(:microsecond),
      swt: Collectors.scheduler_wall_time(),
      reductions: reductions
    }
  end

  @doc """
  Reads this node now (`started_us` is the sample's monotonic start);
  rates are over the time since `prev`. Returns the reading and the next
  `prev`.
  """
  @spec take(prev(), term(), integer()) :: {map(), prev()}
  def take(prev, system_memory, started_us) do
    memory = Collectors.memory(system_memory)
    limits = Collectors.limits()
    rq = Collectors.run_queues()
    swt = Collectors.scheduler_wall_time()
    normal = :erlang.system_info(:schedulers)
    dirty = :erlang.system_info(:dirty_cpu_schedulers_online)
    util = Collectors.utilization(prev.swt, swt, 1..rq.online)

    dirty_util =
      if dirty > 0, do: Collectors.utilization(prev.swt, swt, (normal + 1)..(normal + dirty))

    {reductions, _} = :erlang.statistics(:reductions)
    elapsed_s = (started_us - prev.at_us) / 1_000_000

    reductions_per_s =
      if prev.reductions && elapsed_s > 0,
        do: round((reductions - prev.reductions) / elapsed_s)

    reading = %{
      memory: memory,
      limits: limits,
      run_queues: rq,
      utilization_pct: util,
      dirty_utilization_pct: dirty_util,
      reductions_per_s: reductions_per_s,
      connectivity: Collectors.connectivity()
    }

    {reading, %{at_us: started_us, swt: swt, reductions: reductions}}
  end

  @doc """
  The flat values thresholds and baselines apply to: the reading's, the
  longest message queue (`nil` before the first scan) and the busy
  distribution port events of the interval.
  """
  @spec values(map(), non_neg_integer() | nil, map()) :: map()
  def values(reading, max_queue, busy) do
    %{memory: memory, limits: limits, run_queues: rq, connectivity: connectivity} = reading

    %{
      memory_total_bytes: memory.total_bytes,
      memory_total_pct: memory.total_pct,
      memory_processes_bytes: memory.processes_bytes,
      memory_binary_bytes: memory.binary_bytes,
      memory_ets_bytes: memory.ets_bytes,
      memory_atom_bytes: memory.atom_bytes,
      process_count: limits.process_count,
      process_usage_pct: limits.process_usage_pct,
      port_count: limits.port_count,
      port_usage_pct: limits.port_usage_pct,
      atom_count: limits.atom_count,
      atom_usage_pct: limits.atom_usage_pct,
      run_queue: rq.run_queue,
      run_queue_per_scheduler: rq.run_queue_per_scheduler,
      scheduler_utilization_pct: reading.utilization_pct,
      reductions_per_s: reading.reductions_per_s,
      max_message_queue_len: max_queue,
      busy_dist_port_events: busy.events,
      connectivity: connectivity.level,
      non_up_nodes: connectivity.non_up_nodes
    }
  end
end
