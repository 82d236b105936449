defmodule ClusterScope.NodeViews.OsTest do
  # OS data of this node: the parsers on fixed texts, a real read of this
  # machine, and the machine metrics in the health thresholds and alerts.
  use ExUnit.Case, async: true

  alias ClusterScope.Health.{Alerts, Thresholds}
  alias ClusterScope.NodeViews.Os

  @meminfo """
  MemTotal:       16000000 kB
  MemFree:         2000000 kB
  MemAvailable:    4000000 kB
  Buffers:          100000 kB
  Cached:          1000000 kB
  SwapCached:            0 kB
  SwapTotal:       2000000 kB
  SwapFree:        1500000 kB
  """

  test "meminfo: used is total minus available; swap" do
    {mem, swap} = Os.parse_meminfo(@meminfo)
    assert mem.total_bytes == 16_000_000 * 1024
    assert mem.available_bytes == 4_000_000 * 1024
    assert mem.used_pct == 75.0
    assert swap.used_pct == 25.0 and swap.total_bytes == 2_000_000 * 1024

    # An old kernel without MemAvailable: free + buffers + cache.
    {mem, _} = Os.parse_meminfo(String.replace(@meminfo, ~r/MemAvailable.*\n/, ""))
    assert mem.available_bytes == 3_100_000 * 1024

    assert {nil, nil} = Os.parse_meminfo("garbage")
  end

  test "loadavg" do
    assert %{load1: 0.5, load5: 1.25, load15: 2.0, runnable: 3, threads: 412, cpus: 4} =
             Os.parse_loadavg("0.50 1.25 2.00 3/412 12345\n", 4)

    assert Os.parse_loadavg("", 4) == nil
  end

  test "df -kP output and /proc/mounts: real file systems only, escapes undone" do
    df = """
    Filesystem     1024-blocks     Used Available Capacity Mounted on
    /dev/vda         264212084 16040972  79244912      17% /
    tmpfs              8192000        0   8192000       0% /dev/shm
    /dev/vdb1          1000000   900000    100000      90% /data with space
    """

    mounts = """
    /dev/vda / ext4 rw,relatime 0 0
    tmpfs /dev/shm tmpfs rw 0 0
    proc /proc proc rw 0 0
    /dev/vdb1 /data\\040with\\040space xfs rw 0 0
    """

    real = Os.real_mounts(mounts)
    assert real == %{"/" => "ext4", "/data with space" => "xfs"}

    disks = Os.parse_df(df)
    assert length(disks) == 3
    data = Enum.find(disks, &(&1.mount == "/data with space"))
    assert data.used_pct == 90.0 and data.total_bytes == 1_000_000 * 1024
    assert Os.fullest(disks).mount == "/data with space"
  end

  test "cgroup values: max is no limit" do
    assert Os.limit("max") == nil
    assert Os.limit("536870912") == 536_870_912
    # cgroup v1's "unlimited"
    assert Os.limit("9223372036854771712") == nil
    assert Os.cpu_max("max 100000") == nil
    assert Os.cpu_max("150000 100000") == %{quota_us: 150_000, period_us: 100_000, cpus: 1.5}
  end

  test "a real read of this machine" do
    if File.exists?("/proc/meminfo") do
      r = Os.read()
      assert r.node == node()
      assert r.sources.memory == :proc and r.sources.load == :proc
      assert r.memory.total_bytes > 0 and r.memory.used_pct > 0
      assert r.load.cpus > 0
      assert is_list(r.disks) and r.disks != []
      assert Enum.all?(r.disks, &(&1.total_bytes > 0 and &1.used_pct >= 0))
      assert r.cgroup.version in [1, 2]

      assert %{disks: nil, sources: %{disks: :not_asked}} = Os.read(%{disks: false})

      %{values: values, summary: summary} = Os.health_values()
      assert values.machine_memory_pct == summary.memory_used_pct
      assert is_number(values.disk_usage_pct)
    end
  end

  @tag :tmp_dir
  test "df: killed at its deadline, and only real mounts kept", %{tmp_dir: dir} do
    if File.exists?("/proc/mounts") do
      pidfile = Path.join(dir, "pid")
      hung = Path.join(dir, "hung_df")
      File.write!(hung, "#!/bin/sh\necho $$ > #{pidfile}\nexec sleep 30\n")
      File.chmod!(hung, 0o755)

      {elapsed, r} = :timer.tc(fn -> Os.read(%{df_path: hung}) end)
      assert r.disks == nil and r.sources.disks == :df_timeout
      assert elapsed < 10_000_000
      os_pid = pidfile |> File.read!() |> String.trim()
      # The hung df is gone (killed, reaped by its port program).
      Process.sleep(200)
      assert {_, code} = System.cmd("kill", ["-0", os_pid], stderr_to_stdout: true)
      assert code != 0

      fake = Path.join(dir, "fake_df")

      File.write!(fake, """
      #!/bin/sh
      echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
      echo "/dev/x 1000 500 500 50% /"
      echo "/dev/y 1000 900 100 90% /no/such/mount/here"
      """)

      File.chmod!(fake, 0o755)
      r = Os.read(%{df_path: fake})
      assert r.sources.disks == :df
      assert [%{mount: "/", used_pct: 50.0, fs_type: type}] = r.disks
      assert is_binary(type)

      assert %{disks: nil, sources: %{disks: :no_df}} = Os.read(%{df_path: false})
    end
  end

  test "the machine metrics have thresholds, alerts with hysteresis, and texts" do
    assert :machine_memory_pct in Thresholds.metrics()
    assert :disk_usage_pct in Thresholds.metrics()

    {:ok, t} =
      Thresholds.apply_changes(Thresholds.defaults(), %{
        "disk_usage_pct" => %{"warning" => 50, "critical" => 80},
        "clear_after_samples" => 2
      })

    sample = %{os: %{fullest_disk_mount: "/data", fullest_disk_used_pct: 60.0}}
    ctx = %{node: node(), now_ms: 1, seq: 0, sample: sample}

    {tracks, [{:raised, alert}], seq} = Alerts.evaluate(%{}, %{disk_usage_pct: 60.0}, t, ctx)
    assert alert.metric == :disk_usage_pct and alert.severity == :warning
    assert alert.message =~ "/data" and alert.message =~ "60.0% full"

    # 47 is under 50 but above the clear line (45 with hysteresis 0.1).
    {tracks, [], seq} = Alerts.evaluate(tracks, %{disk_usage_pct: 47.0}, t, %{ctx | seq: seq})

    {tracks, [], seq} = Alerts.evaluate(tracks, %{disk_usage_pct: 40.0}, t, %{ctx | seq: seq})

    {_tracks, [{:cleared, %{metric: :disk_usage_pct}}], _} =
      Alerts.evaluate(tracks, %{disk_usage_pct: 40.0}, t, %{ctx | seq: seq})

    # Unknown (nil) raises nothing.
    assert {_, [], _} = Alerts.evaluate(%{}, %{machine_memory_pct: nil}, t, ctx)
    {_, [{:raised, m}], _} = Alerts.evaluate(%{}, %{machine_memory_pct: 97.0}, t, ctx)
    assert m.severity == :critical and m.message =~ "memory in use"
  end
end
