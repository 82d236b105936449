defmodule ClusterScope.Test.NodeWatcher do
  @moduledoc """
  Runs on a peer: records every `:net_kernel.monitor_nodes/2` event with a
  monotonic timestamp, so the test process can ask (over `:peer`'s standard
  I/O) what this node saw, even when its distribution links are cut.
  """

  @name __MODULE__

  @doc "Starts the watcher on this node (unlinked; idempotent)."
  def start do
    case Process.whereis(@name) do
      nil ->
        parent = self()

        pid =
          spawn(fn ->
            :ok = :net_kernel.monitor_nodes(true, [{:node_type, :all}, :nodedown_reason])
            Process.register(self(), @name)
            send(parent, {@name, :ready})
            loop([])
          end)

        receive do
          {@name, :ready} -> {:ok, pid}
        after
          5_000 -> {:error, :timeout}
        end

      pid ->
        {:ok, pid}
    end
  end

  @doc "Spawns a process that keeps a scheduler busy for `ms` milliseconds."
  def spawn_burner(ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    spawn(fn -> burn(deadline, 0) end)
  end

  defp burn(deadline, n) do
    if rem(n, 10_000) == 0 and System.monotonic_time(:millisecond) > deadline do
      :ok
    else
      _ = :erlang.phash2({n, :burn})
      burn(deadline, n + 1)
    end
  end

  @doc "Subscribes a recorder to ClusterScope's cluster events on this node."
  def start_cluster_recorder do
    parent = self()

    pid =
      spawn(fn ->
        :ok = ClusterScope.subscribe(:cluster)
        Process.register(self(), :cluster_scope_test_recorder)
        send(parent, :recorder_ready)
        record([])
      end)

    receive do
      :recorder_ready -> {:ok, pid}
    after
      5_000 -> {:error, :timeout}
    end
  end

  @doc "The cluster events recorded so far, oldest first."
  def cluster_events do
    send(:cluster_scope_test_recorder, {:get, self()})

    receive do
      {:cluster_events, events} -> events
    after
      5_000 -> exit(:recorder_timeout)
    end
  end

  defp record(events) do
    receive do
      {:cluster_scope, :cluster, event} -> record([event | events])
      {:get, from} -> send(from, {:cluster_events, Enum.reverse(events)}) && record(events)
    end
  end

  @doc "The events seen so far, oldest first: `{event, node, info, at_ms}` (system time)."
  def events do
    ref = make_ref()
    send(@name, {:events, self(), ref})

    receive do
      {^ref, events} -> events
    after
      5_000 -> exit(:watcher_timeout)
    end
  end

  @doc "The local IP address of each of this node's distribution connections."
  def dist_local_ips do
    for {node, ctrl} <- :erlang.system_info(:dist_ctrl), is_port(ctrl) do
      {:ok, {ip, _port}} = :inet.sockname(ctrl)
      {node, ip}
    end
  end

  @doc """
  Opens a UDP socket on `ip` owned by a new process that waits for one
  datagram for `timeout` ms. Returns `{port, pid}`; read the outcome with
  `udp_result/1`.
  """
  def udp_listen(ip, timeout) do
    parent = self()

    pid =
      spawn(fn ->
        {:ok, socket} = :gen_udp.open(0, [:binary, active: false, ip: ip])
        {:ok, port} = :inet.port(socket)
        send(parent, {:udp_port, self(), port})
        result = :gen_udp.recv(socket, 0, timeout)
        :gen_udp.close(socket)

        receive do
          {:udp_result, from} -> send(from, {:udp_result, self(), result})
        end
      end)

    receive do
      {:udp_port, ^pid, port} -> {port, pid}
    end
  end

  @doc "Waits for the outcome of a `udp_listen/2` receiver."
  def udp_result(pid) do
    send(pid, {:udp_result, self()})

    receive do
      {:udp_result, ^pid, result} -> result
    after
      10_000 -> {:error, :no_result}
    end
  end

  @doc "Sends one datagram from `from_ip` to `to_ip:port`."
  def udp_send(from_ip, to_ip, port, payload) do
    {:ok, socket} = :gen_udp.open(0, [:binary, ip: from_ip])
    result = :gen_udp.send(socket, to_ip, port, payload)
    :gen_udp.close(socket)
    result
  end

  @doc """
  Loads `ClusterScope.Native` again (its `@on_load` runs) while a logger
  handler collects what is logged at error level. Returns
  `{load_result, [message]}`.
  """
  def reload_native_logging_errors do
    parent = self()
    ref = make_ref()
    handler = :"cs_test_capture_#{System.unique_integer([:positive])}"

    :ok =
      :logger.add_handler(handler, __MODULE__, %{
        level: :error,
        config: %{pid: parent, ref: ref}
      })

    :code.purge(ClusterScope.Native)
    :code.delete(ClusterScope.Native)
    :code.purge(ClusterScope.Native)
    result = :code.load_file(ClusterScope.Native)
    :logger.remove_handler(handler)

    {result, collect(ref, [])}
  end

  @doc false
  # :logger handler callback of reload_native_logging_errors/0.
  def log(%{msg: msg}, %{config: %{pid: pid, ref: ref}}) do
    text =
      case msg do
        {:string, s} -> IO.chardata_to_string(s)
        {:report, r} -> inspect(r)
        {format, args} -> format |> :io_lib.format(args) |> IO.chardata_to_string()
      end

    send(pid, {ref, text})
  end

  defp collect(ref, acc) do
    receive do
      {^ref, text} -> collect(ref, [text | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  defp loop(events) do
    receive do
      {event, node, info} when event in [:nodeup, :nodedown] ->
        # Wall-clock time: comparable across the VMs of one host.
        loop([{event, node, Map.new(info), System.system_time(:millisecond)} | events])

      {:events, from, ref} ->
        send(from, {ref, Enum.reverse(events)})
        loop(events)
    end
  end
end
