defmodule ClusterScope.NodeViews.Os do
  @moduledoc """
  The machine a node runs on, as that node sees it: CPU load, memory, swap,
  disk usage of its mounted file systems and the cgroup limits that apply
  to it (what the node computes about itself for `node_os` and
  `cluster_os`, and the machine values of the health monitor).

  ## Sources, and why

  ClusterScope never starts `os_mon`: starting it is the host's choice (it
  starts port programs, polls every minute and raises its own alarms), and
  a library that observes must not add that to a node. So:

    * **load, memory, swap** come from `/proc/loadavg` and `/proc/meminfo`
      (two small file reads, the same numbers `cpu_sup` and `memsup` read);
      where `/proc` is absent (not Linux) and `os_mon` runs, from `cpu_sup`
      and `memsup` (gen_server calls, each made under the deadline);
      otherwise `nil` with the source `unavailable`.
    * **disks**: when `os_mon`'s `disksup` runs, its last check
      (`:disksup.get_disk_data/0`: no new work on the node, but only as
      fresh as its interval, 30 minutes by default). Otherwise `df -kPl`
      run directly (no shell, nothing from the request on its command line,
      local file systems only so a hung network mount is not touched),
      killed after 2 s; the mount points kept are those of `/proc/mounts`
      whose type is a real file system (not proc, sysfs, cgroup, tmpfs,
      ...). OTP has no `statvfs`, and a NIF for it would need a crate
      outside the allowed list, hence `df`.
    * **cgroup limits**: v2 (`/proc/self/cgroup` gives the group;
      `memory.max`, `memory.current`, `cpu.max` under `/sys/fs/cgroup`), or
      v1's `memory.limit_in_bytes`/`memory.usage_in_bytes` and
      `cpu.cfs_quota_us`/`cpu.cfs_period_us`. "max" is no limit (`nil`).

  ## Nodes without ClusterScope

  `read_remote/3` reads a connected node that runs no ClusterScope from
  the caller, with OTP calls only (`:file.read_file/1` of the same files,
  made by a process of that node; `:os.type/0`; the CPU count; disksup's
  data when os_mon runs there). It never runs `df` there: a port program
  started by a remote call could not be killed at a deadline. Its disks are
  then `nil`, source `agentless`.

  ## Cost on the node

  About ten small file reads and, without `disksup`, one fork and exec of
  `df` (it calls `statfs` on each local mount). Measured on a loaded 2-core
  x86-64 (median): 0.43 ms without disks, 8.3 ms with `df`. The health monitor takes it in its
  low-priority collector process, at most every 10 s (`health_values/1`),
  never in the monitor itself.
  """

  import Bitwise, only: [<<<: 2]

  @df_timeout 2_000
  @max_disks 64
  @virtual_fs ~w(proc sysfs cgroup cgroup2 devpts devtmpfs tmpfs securityfs pstore debugfs
                 tracefs configfs fusectl mqueue hugetlbfs bpf autofs binfmt_misc rpc_pipefs
                 nsfs ramfs efivarfs selinuxfs squashfs overlay_lower nfsd fuse.gvfsd-fuse)

  @doc """
  Everything about the machine: `%{node, at_ms, load, memory, swap, disks,
  cgroup, sources, os_mon}`. `disks: false` in `opts` leaves the disks out
  (no `df`). Never raises; an unreadable part is `nil` and its source says
  why (`unavailable`, and for disks `df_timeout` or `no_df`). Only maps,
  lists, numbers, binaries and atoms: the answer encodes as JSON as is.
  """
  @spec read(map()) :: map()
  def read(opts \\ %{}), do: collect(local_source(opts), opts)

  @doc """
  The same reading of a connected node that runs no ClusterScope, made
  from here with OTP calls only, each through `ClusterScope.Fanout.rpc/5`:
  `:file.read_file/1` of the same `/proc` and cgroup files (read by a
  process of that node, so `/proc/self` is its VM), `:os.type/0`, the CPU
  count, and `disksup`'s last check when os_mon runs there. No `df` is run
  on a node without ClusterScope (nothing could kill it at a deadline):
  without disksup its disks are `nil` with the source `agentless`.
  Returns `{:ok, reading}` (with `agentless: true`) or `{:error, rpc_error}`
  when the node does not answer; every call is bounded by what is left of
  `timeout`.

  Cost: about a dozen round trips to the node, each a small file read there.
  """
  @spec read_remote(node(), map(), pos_integer()) :: {:ok, map()} | {:error, term()}
  def read_remote(node, opts, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout

    rpc = fn m, f, a ->
      left = max(deadline - System.monotonic_time(:millisecond), 1)
      ClusterScope.Fanout.rpc(node, m, f, a, min(left, @df_timeout))
    end

    call = fn m, f, a ->
      case rpc.(m, f, a) do
        {:ok, value} -> {:ok, value}
        _ -> :error
      end
    end

    with {:ok, os_type} <- rpc.(:os, :type, []) do
      source = %{
        node: node,
        agentless: true,
        os: os_name(os_type),
        read: fn path ->
          case rpc.(:file, :read_file, [path]) do
            {:ok, answer} -> answer
            {:error, reason} -> {:error, reason}
          end
        end,
        os_mon: match?({:ok, pid} when is_pid(pid), call.(:erlang, :whereis, [:os_mon_sup])),
        cpus:
          case call.(:erlang, :system_info, [:logical_processors_available]) do
            {:ok, n} when is_integer(n) -> n
            _ -> nil
          end,
        call: call,
        df: fn -> {:error, :agentless} end
      }

      {:ok, collect(source, opts)}
    end
  end

  defp local_source(opts) do
    # `df_path` (tests only: the operations never pass it) replaces df.
    df = Map.get(opts, :df_path, System.find_executable("df"))

    %{
      node: node(),
      agentless: false,
      os: os_name(:os.type()),
      read: &File.read/1,
      os_mon: os_mon_running(),
      cpus: cpus(),
      call: fn m, f, a -> bounded(fn -> apply(m, f, a) end) end,
      df: fn -> df(df) end
    }
  end

  defp collect(src, opts) do
    {load, load_src} = load(src)
    {memory, swap, mem_src} = memory(src)

    {disks, disk_src} = if Map.get(opts, :disks, true), do: disks(src), else: {nil, :not_asked}

    %{
      node: src.node,
      agentless: src.agentless,
      at_ms: System.system_time(:millisecond),
      os: src.os,
      load: load,
      memory: memory,
      swap: swap,
      disks: disks,
      cgroup: cgroup(src),
      os_mon: src.os_mon,
      sources: %{load: load_src, memory: mem_src, disks: disk_src}
    }
  end

  @doc """
  The machine values the health monitor compares with its thresholds:
  `machine_memory_pct` (memory in use, `MemTotal - MemAvailable`, as a %
  of `MemTotal`) and `disk_usage_pct` (the fullest mounted file system,
  %), each `nil` when unknown; plus the reading's summary (`os` section of
  a sample: flat, `pending_summary/0` before the first reading).
  """
  @spec health_values() :: %{values: map(), summary: map()}
  def health_values do
    reading = read()
    fullest = fullest(reading.disks)

    %{
      values: %{
        machine_memory_pct: reading.memory && reading.memory.used_pct,
        disk_usage_pct: fullest && fullest.used_pct
      },
      summary: %{
        status: :ok,
        memory_used_pct: reading.memory && reading.memory.used_pct,
        swap_used_pct: reading.swap && reading.swap.used_pct,
        load1: reading.load && reading.load.load1,
        fullest_disk_mount: fullest && fullest.mount,
        fullest_disk_used_pct: fullest && fullest.used_pct,
        memory_source: reading.sources.memory,
        disks_source: reading.sources.disks
      }
    }
  end

  @doc "The `os` section of a sample taken before the first reading."
  @spec pending_summary() :: map()
  def pending_summary do
    %{
      status: :pending,
      memory_used_pct: nil,
      swap_used_pct: nil,
      load1: nil,
      fullest_disk_mount: nil,
      fullest_disk_used_pct: nil,
      memory_source: nil,
      disks_source: nil
    }
  end

  @doc "The fullest disk of a list (by `used_pct`), or `nil`."
  @spec fullest([map()] | nil) :: map() | nil
  def fullest(disks) when is_list(disks),
    do: Enum.max_by(disks, & &1.used_pct, fn -> nil end)

  def fullest(_), do: nil

  defp os_name({family, name}), do: "#{family}/#{name}"
  defp os_name(_), do: nil

  # os_mon's top supervisor, by its registered name: no call to the
  # application controller (which can be busy starting an application).
  defp os_mon_running, do: is_pid(Process.whereis(:os_mon_sup))

  # -- load ---------------------------------------------------------------------------

  defp load(src) do
    case src.read.("/proc/loadavg") do
      {:ok, text} ->
        {parse_loadavg(text, src.cpus), :proc}

      _ when src.os_mon ->
        with {:ok, a} when is_integer(a) <- src.call.(:cpu_sup, :avg1, []),
             {:ok, b} when is_integer(b) <- src.call.(:cpu_sup, :avg5, []),
             {:ok, c} when is_integer(c) <- src.call.(:cpu_sup, :avg15, []) do
          {%{load1: a / 256, load5: b / 256, load15: c / 256, cpus: src.cpus}, :cpu_sup}
        else
          _ -> {nil, :unavailable}
        end

      _ ->
        {nil, :unavailable}
    end
  end

  @doc false
  @spec parse_loadavg(String.t(), pos_integer() | nil) :: map() | nil
  def parse_loadavg(text, cpus) do
    case String.split(text) do
      [a, b, c, running | _] ->
        {run, total} =
          case String.split(running, "/") do
            [r, t] -> {int(r), int(t)}
            _ -> {nil, nil}
          end

        %{
          load1: float(a),
          load5: float(b),
          load15: float(c),
          runnable: run,
          threads: total,
          cpus: cpus
        }

      _ ->
        nil
    end
  end

  defp cpus do
    case :erlang.system_info(:logical_processors_available) do
      n when is_integer(n) -> n
      _ -> :erlang.system_info(:logical_processors)
    end
  end

  # -- memory -------------------------------------------------------------------------

  defp memory(src) do
    case src.read.("/proc/meminfo") do
      {:ok, text} ->
        {mem, swap} = parse_meminfo(text)
        {mem, swap, :proc}

      _ when src.os_mon ->
        case src.call.(:memsup, :get_system_memory_data, []) do
          {:ok, data} when is_list(data) ->
            {mem, swap} = from_memsup(data)
            {mem, swap, :memsup}

          _ ->
            {nil, nil, :unavailable}
        end

      _ ->
        {nil, nil, :unavailable}
    end
  end

  @doc false
  @spec parse_meminfo(String.t()) :: {map() | nil, map() | nil}
  def parse_meminfo(text) do
    kb =
      for line <- String.split(text, "\n"),
          [key, rest] <- [String.split(line, ":", parts: 2)],
          key in ~w(MemTotal MemFree MemAvailable Buffers Cached SwapTotal SwapFree),
          n = int(rest |> String.trim() |> String.trim_trailing(" kB")),
          into: %{},
          do: {key, n && n * 1024}

    memory =
      case kb do
        %{"MemTotal" => total} when is_integer(total) and total > 0 ->
          available =
            kb["MemAvailable"] ||
              Enum.sum(Enum.map(~w(MemFree Buffers Cached), &(kb[&1] || 0)))

          %{
            total_bytes: total,
            available_bytes: available,
            free_bytes: kb["MemFree"],
            used_bytes: total - available,
            used_pct: pct(total - available, total)
          }

        _ ->
          nil
      end

    swap =
      case kb do
        %{"SwapTotal" => total, "SwapFree" => free} when is_integer(total) and is_integer(free) ->
          %{
            total_bytes: total,
            free_bytes: free,
            used_bytes: total - free,
            used_pct: if(total > 0, do: pct(total - free, total), else: 0.0)
          }

        _ ->
          nil
      end

    {memory, swap}
  end

  defp from_memsup(data) do
    total = data[:system_total_memory] || data[:total_memory]
    available = data[:available_memory] || data[:free_memory]

    memory =
      if is_integer(total) and total > 0 and is_integer(available) do
        %{
          total_bytes: total,
          available_bytes: available,
          free_bytes: data[:free_memory],
          used_bytes: total - available,
          used_pct: pct(total - available, total)
        }
      end

    swap =
      case {data[:total_swap], data[:free_swap]} do
        {t, f} when is_integer(t) and is_integer(f) ->
          %{
            total_bytes: t,
            free_bytes: f,
            used_bytes: t - f,
            used_pct: if(t > 0, do: pct(t - f, t), else: 0.0)
          }

        _ ->
          nil
      end

    {memory, swap}
  end

  # -- disks --------------------------------------------------------------------------

  defp disks(src) do
    with true <- src.os_mon,
         {:ok, pid} when is_pid(pid) <- src.call.(:erlang, :whereis, [:disksup]),
         {:ok, data} when is_list(data) <- src.call.(:disksup, :get_disk_data, []) do
      {data |> from_disksup() |> only_real(src), :disksup}
    else
      _ -> df_disks(src)
    end
  end

  defp df_disks(src) do
    with {:ok, mounts} <- src.read.("/proc/mounts"),
         real = real_mounts(mounts),
         {:ok, out} <- src.df.() do
      {out
       |> parse_df()
       |> Enum.filter(&Map.has_key?(real, &1.mount))
       |> fs_types(real)
       |> Enum.take(@max_disks), :df}
    else
      {:error, :df_timeout} -> {nil, :df_timeout}
      {:error, :no_df} -> {nil, :no_df}
      {:error, :agentless} -> {nil, :agentless}
      _ -> {nil, :unavailable}
    end
  end

  # disksup lists every mount (tmpfs, cgroup, ...): keep the real file
  # systems of /proc/mounts, as with df, where it can be read.
  defp only_real(disks, src) do
    case src.read.("/proc/mounts") do
      {:ok, mounts} ->
        real = real_mounts(mounts)
        disks |> Enum.filter(&Map.has_key?(real, &1.mount)) |> fs_types(real)

      _ ->
        disks
    end
  end

  defp fs_types(disks, real), do: Enum.map(disks, &Map.put(&1, :fs_type, real[&1.mount]))

  defp from_disksup(data) do
    data
    |> Enum.take(@max_disks)
    |> Enum.map(fn {mount, kbytes, capacity} ->
      total = kbytes * 1024

      %{
        mount: to_string(mount),
        device: nil,
        fs_type: nil,
        total_bytes: total,
        used_bytes: div(total * capacity, 100),
        available_bytes: total - div(total * capacity, 100),
        used_pct: capacity * 1.0
      }
    end)
  end

  @doc false
  @spec real_mounts(String.t()) :: %{String.t() => String.t()}
  def real_mounts(text) do
    for line <- String.split(text, "\n"),
        [_device, mount, type | _] <- [String.split(line, " ")],
        type not in @virtual_fs,
        into: %{},
        do: {unescape(mount), type}
  end

  # /proc/mounts writes a space as \040, a tab as \011, ...
  defp unescape(text),
    do:
      Regex.replace(~r/\\([0-7]{3})/, text, fn _, oct ->
        <<String.to_integer(oct, 8)>>
      end)

  @doc false
  @spec parse_df(String.t()) :: [map()]
  def parse_df(text) do
    for line <- text |> String.split("\n") |> Enum.drop(1),
        [_, dev, blocks, used, avail, cap, mount] <-
          [Regex.run(~r/^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(.+)$/, line)] do
      total = String.to_integer(blocks) * 1024
      used = String.to_integer(used) * 1024
      avail = String.to_integer(avail) * 1024

      %{
        mount: mount,
        device: dev,
        total_bytes: total,
        used_bytes: used,
        available_bytes: avail,
        # df's own rounding of used / (used + available), as `df` prints it;
        # the exact ratio here.
        used_pct: if(used + avail > 0, do: pct(used, used + avail), else: cap_pct(cap))
      }
    end
  end

  defp cap_pct(cap), do: String.to_integer(cap) * 1.0

  defp df(path) do
    case path do
      empty when empty in [nil, false] ->
        {:error, :no_df}

      path ->
        port =
          Port.open({:spawn_executable, path}, [
            :binary,
            :exit_status,
            :stderr_to_stdout,
            args: ["-kPl"],
            env: [{~c"LC_ALL", ~c"C"}]
          ])

        os_pid =
          case Port.info(port, :os_pid) do
            {:os_pid, p} -> p
            _ -> nil
          end

        collect_df(port, os_pid, [], System.monotonic_time(:millisecond) + @df_timeout)
    end
  rescue
    _ -> {:error, :df_failed}
  end

  defp collect_df(port, os_pid, acc, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, data}} ->
        collect_df(port, os_pid, [acc, data], deadline)

      # df answers 1 when one file system could not be read, with the
      # others printed: keep what it printed.
      {^port, {:exit_status, _status}} ->
        {:ok, IO.iodata_to_binary(acc)}
    after
      wait ->
        catch_close(port)

        if os_pid,
          do: System.cmd("kill", ["-KILL", Integer.to_string(os_pid)], stderr_to_stdout: true)

        {:error, :df_timeout}
    end
  end

  defp catch_close(port) do
    Port.close(port)
  rescue
    _ -> :ok
  end

  # -- cgroup -------------------------------------------------------------------------

  defp cgroup(src) do
    case src.read.("/proc/self/cgroup") do
      {:ok, text} -> cgroup_of(text, src.read)
      _ -> nil
    end
  end

  defp cgroup_of(text, read) do
    lines = String.split(text, "\n", trim: true)

    case Enum.find(lines, &String.starts_with?(&1, "0::")) do
      "0::" <> path when length(lines) == 1 ->
        dir = Path.join("/sys/fs/cgroup", path)

        dir =
          if match?({:ok, _}, read.(Path.join(dir, "memory.max"))),
            do: dir,
            else: "/sys/fs/cgroup"

        %{
          version: 2,
          path: path,
          memory_max_bytes: limit(read_trim(read, Path.join(dir, "memory.max"))),
          memory_current_bytes: limit(read_trim(read, Path.join(dir, "memory.current"))),
          cpu_max: cpu_max(read_trim(read, Path.join(dir, "cpu.max")))
        }
        |> with_memory_pct()

      _ ->
        quota = limit(read_trim(read, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
        period = limit(read_trim(read, "/sys/fs/cgroup/cpu/cpu.cfs_period_us"))

        %{
          version: 1,
          path: nil,
          memory_max_bytes: limit(read_trim(read, "/sys/fs/cgroup/memory/memory.limit_in_bytes")),
          memory_current_bytes:
            limit(read_trim(read, "/sys/fs/cgroup/memory/memory.usage_in_bytes")),
          cpu_max:
            if(is_integer(quota) and quota > 0 and is_integer(period) and period > 0,
              do: %{quota_us: quota, period_us: period, cpus: quota / period}
            )
        }
        |> with_memory_pct()
    end
  end

  defp with_memory_pct(%{memory_max_bytes: max, memory_current_bytes: cur} = c)
       when is_integer(max) and max > 0 and is_integer(cur),
       do: Map.put(c, :memory_used_pct, pct(cur, max))

  defp with_memory_pct(c), do: Map.put(c, :memory_used_pct, nil)

  @doc false
  @spec cpu_max(String.t() | nil) :: map() | nil
  def cpu_max(nil), do: nil

  def cpu_max(text) do
    case String.split(text) do
      [quota, period] ->
        case {int(quota), int(period)} do
          {q, p} when is_integer(q) and is_integer(p) and p > 0 ->
            %{quota_us: q, period_us: p, cpus: q / p}

          _ ->
            nil
        end

      _ ->
        nil
    end
  end

  defp read_trim(read, path) do
    case read.(path) do
      {:ok, text} -> String.trim(text)
      _ -> nil
    end
  end

  # "max" (v2) and v1's huge "unlimited" are no limit.
  @doc false
  @spec limit(String.t() | nil) :: non_neg_integer() | nil
  def limit(text) when is_binary(text) do
    case int(text) do
      n when is_integer(n) and n >= 0 and n < 1 <<< 60 -> n
      _ -> nil
    end
  end

  def limit(_), do: nil

  # -- helpers ------------------------------------------------------------------------

  # os_mon's calls wait on its servers: in a helper killed at the deadline
  # (not linked: a crash there is an answer, not our crash).
  defp bounded(fun) do
    {pid, ref} = spawn_monitor(fn -> exit({:cs_os, fun.()}) end)

    receive do
      {:DOWN, ^ref, :process, ^pid, {:cs_os, value}} -> {:ok, value}
      {:DOWN, ^ref, :process, ^pid, _} -> :error
    after
      @df_timeout ->
        Process.exit(pid, :kill)
        Process.demonitor(ref, [:flush])
        :error
    end
  end

  defp int(text) do
    case Integer.parse(String.trim(text)) do
      {n, ""} -> n
      _ -> nil
    end
  end

  defp float(text) do
    case Float.parse(text) do
      {f, ""} -> f
      _ -> nil
    end
  end

  defp pct(_part, 0), do: nil
  defp pct(part, whole), do: Float.round(part * 100 / whole, 2)
end
