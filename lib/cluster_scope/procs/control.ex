defmodule ClusterScope.Procs.Control do
  @moduledoc """
  One process, wherever it lives: its full info, killing it, sending it a
  message. The same calls work on any node of the cluster, with or without
  ClusterScope there (`ClusterScope.Procs.Rows` is loaded onto a node that
  lacks it), and every answer names the process's node.

  ## Protection

  Killing or messaging a process is refused (`forbidden`) unless `force:
  true` when the process belongs to the runtime (registered as one of
  OTP's system servers, owned by `kernel`, `stdlib`, `elixir`, `logger`,
  `compiler` or `sasl`, or running at `max` priority) or to ClusterScope
  itself: a mistyped pid must not take down the node's code server or the
  tool the operator is using to repair it.
  """

  alias ClusterScope.ProcessRef
  alias ClusterScope.Procs.{Agentless, Rows, Terms}

  @system_apps [:kernel, :stdlib, :elixir, :logger, :compiler, :sasl]
  @system_names [
    :init,
    :erts_code_purger,
    :erts_literal_area_collector,
    :erts_dirty_process_signal_handler,
    :application_controller,
    :code_server,
    :erl_prim_loader,
    :kernel_sup,
    :kernel_safe_sup,
    :net_kernel,
    :net_sup,
    :global_name_server,
    :global_group,
    :inet_db,
    :erl_epmd,
    :auth,
    :rex,
    :file_server_2,
    :user,
    :user_drv,
    :standard_error,
    :standard_error_sup,
    :logger,
    :logger_sup,
    :socket_registry,
    :erl_signal_server
  ]

  @doc "The pid a reference names, resolved on its node (no atom created)."
  @spec pid(ProcessRef.t()) :: {:ok, pid()} | {:error, term()}
  def pid(%ProcessRef{node: node, id: id, serial: serial} = ref) do
    if node == node() do
      {:ok, :erlang.list_to_pid(~c"<0.#{id}.#{serial}>")}
    else
      {:ok, :erpc.call(node, :erlang, :list_to_pid, [~c"<0.#{id}.#{serial}>"], timeout())}
    end
  catch
    # Numbers beyond the VM's pid range name no process.
    :error, :badarg -> {:error, not_found(ref)}
    :error, {:exception, :badarg, _} -> {:error, not_found(ref)}
    :error, {:erpc, reason} -> {:error, {:node_unavailable, node, reason}}
  end

  @doc """
  Everything about a process: the fields of a process list row, links and
  monitors with their nodes, ancestors, trap_exit, priority, and its state
  through `:sys.get_state/2` when it is an OTP behaviour (`state_timeout`
  ms, 0 to skip).
  """
  @spec info(ProcessRef.t(), non_neg_integer()) :: {:ok, map()} | {:error, term()}
  def info(%ProcessRef{node: node} = ref, state_timeout) do
    with {:ok, pid} <- pid(ref),
         :ok <- rows_on(node),
         {:ok, info} <- remote(node, Rows, :info_v1, [pid, state_timeout], state_timeout) do
      case info do
        :undefined -> {:error, not_found(ref)}
        info -> {:ok, present_info(pid, info)}
      end
    end
  end

  @doc """
  Sends an exit signal to the process (`reason` `"kill"`, `"shutdown"`,
  `"normal"` or any text, sent as `{:shutdown, text}`) and waits up to
  `wait_ms` for it to exit. Refused for protected processes unless `force`.
  """
  @spec kill(ProcessRef.t(), String.t(), boolean(), non_neg_integer()) ::
          {:ok, map()} | {:error, term()}
  def kill(%ProcessRef{} = ref, reason, force, wait_ms \\ 1_000) do
    with {:ok, pid, row} <- target(ref, force) do
      monitor = Process.monitor(pid)
      exit_reason = exit_reason(reason)
      Process.exit(pid, exit_reason)

      exited =
        receive do
          {:DOWN, ^monitor, :process, ^pid, why} -> {true, why}
        after
          wait_ms ->
            Process.demonitor(monitor, [:flush])
            {false, nil}
        end

      {:ok,
       %{
         pid: ProcessRef.to_string(ref),
         node: Atom.to_string(ref.node),
         registered_name: name(row),
         reason: inspect(exit_reason),
         exited: elem(exited, 0),
         exit_reason: exited |> elem(1) |> then(&if(&1, do: inspect(&1))),
         forced: force and protected(row) != nil
       }}
    end
  end

  @doc """
  Delivers `message` (already mapped from JSON, see `ClusterScope.Procs.Terms`)
  with `mode` `:send` (plain `send/2`), `:cast` (`GenServer.cast/2`) or
  `:call` (`GenServer.call/3` with `timeout_ms`, answering the reply).
  """
  @spec send_message(ProcessRef.t(), :send | :cast | :call, term(), pos_integer(), boolean()) ::
          {:ok, map()} | {:error, term()}
  def send_message(%ProcessRef{} = ref, mode, message, timeout_ms, force) do
    with {:ok, pid, _row} <- target(ref, force) do
      base = %{pid: ProcessRef.to_string(ref), node: Atom.to_string(ref.node), mode: mode}

      case mode do
        :send ->
          send(pid, message)
          {:ok, Map.put(base, :delivered, true)}

        :cast ->
          GenServer.cast(pid, message)
          {:ok, Map.put(base, :delivered, true)}

        :call ->
          call(pid, message, timeout_ms, base)
      end
    end
  end

  defp call(pid, message, timeout_ms, base) do
    started = System.monotonic_time(:microsecond)
    reply = GenServer.call(pid, message, timeout_ms)

    {:ok,
     Map.merge(base, %{
       delivered: true,
       reply: Terms.to_json(reply),
       reply_text: inspect(reply, limit: 50, printable_limit: 4_096),
       call_us: System.monotonic_time(:microsecond) - started
     })}
  catch
    :exit, {:timeout, _} ->
      {:error,
       {:timeout, "#{base.pid} did not reply within #{timeout_ms} ms",
        %{pid: base.pid, timeout_ms: timeout_ms}}}

    :exit, {reason, _} ->
      {:error,
       {:unavailable,
        "the call to #{base.pid} failed: #{inspect(reason, limit: 10)} (is it a GenServer?)",
        %{pid: base.pid}}}
  end

  @doc """
  Why a row's process is protected (`nil` when it is not): its
  registered name, its application, its priority or ClusterScope's own.
  """
  @spec protected(tuple()) :: String.t() | nil
  def protected(row) do
    name = elem(row, 9)
    app = elem(row, 11)

    cond do
      name in @system_names -> "#{name} is a system process of the runtime"
      app == :cluster_scope -> "it is one of ClusterScope's own processes"
      app in @system_apps -> "it belongs to the #{app} application"
      true -> nil
    end
  end

  defp target(%ProcessRef{node: node} = ref, force) do
    with {:ok, pid} <- pid(ref),
         :ok <- rows_on(node),
         {:ok, info} <- remote(node, Rows, :info_v1, [pid, 0], 0) do
      case info do
        :undefined ->
          {:error, not_found(ref)}

        %{row: row, priority: priority} ->
          why = protected(row) || if(priority == :max, do: "it runs at max priority")

          if why && not force do
            {:error,
             {:forbidden, "refused: #{ProcessRef.to_string(ref)} is protected (#{why})",
              %{pid: ProcessRef.to_string(ref), protected: why, force: false}}}
          else
            {:ok, pid, row}
          end
      end
    end
  end

  defp exit_reason("kill"), do: :kill
  defp exit_reason("shutdown"), do: :shutdown
  defp exit_reason("normal"), do: :normal
  defp exit_reason(text), do: {:shutdown, text}

  defp rows_on(node) when node == node(), do: :ok

  defp rows_on(node) do
    if node in ClusterScope.Cluster.Heartbeat.agent_nodes() do
      :ok
    else
      case Agentless.ensure_rows(node, timeout()) do
        :ok -> :ok
        {:error, reason} -> {:error, {:node_unavailable, node, reason}}
      end
    end
  end

  defp remote(node, mod, fun, args, extra_ms) do
    {:ok, :erpc.call(node, mod, fun, args, timeout() + extra_ms)}
  catch
    :error, {:erpc, reason} -> {:error, {:node_unavailable, node, reason}}
    :error, {:exception, reason, _} -> {:error, {:internal, inspect(reason, limit: 10)}}
  end

  defp timeout, do: ClusterScope.Fanout.default_timeout()

  defp not_found(ref) do
    text = ProcessRef.to_string(ref)
    {:not_found, "no process #{text} (it has exited or never existed)", %{pid: text}}
  end

  defp present_info(pid, info) do
    row = info.row

    state =
      case info.state do
        {:ok, state} ->
          %{
            state: Terms.to_json(state),
            state_text: inspect(state, limit: 50, printable_limit: 4_096)
          }

        {:state_too_large, bytes, text} ->
          %{state_error: "state too large to copy (#{bytes} bytes)", state_text: text}

        {:state_error, reason} ->
          %{state_error: inspect(reason, limit: 10)}

        :not_a_behaviour ->
          %{state_error: "not an OTP behaviour: no state to read"}

        :not_requested ->
          %{}
      end

    Map.merge(
      %{
        pid: ProcessRef.to_string(pid),
        node: Atom.to_string(node(pid)),
        registered_name: name(row),
        memory: elem(row, 1),
        reductions: elem(row, 2),
        message_queue_len: elem(row, 3),
        heap_size: elem(row, 4),
        stack_size: elem(row, 5),
        total_heap_size: elem(row, 6),
        status: elem(row, 7),
        current_function: mfa(elem(row, 8)),
        initial_call: mfa(elem(row, 10)),
        application: elem(row, 11),
        type: elem(row, 12),
        links: Enum.map(info.links, &endpoint/1),
        monitors: Enum.map(info.monitors, &monitor/1),
        monitored_by: Enum.map(info.monitored_by, &endpoint/1),
        ancestors: Enum.map(info.ancestors, &endpoint/1),
        trap_exit: info.trap_exit,
        priority: info.priority,
        group_leader: endpoint(info.group_leader),
        protected: protected(row)
      },
      state
    )
  end

  defp name([]), do: nil
  defp name(row) when is_tuple(row), do: name(elem(row, 9))
  defp name(atom) when is_atom(atom), do: Atom.to_string(atom)

  defp mfa({m, f, a}), do: "#{m}:#{f}/#{a}"
  defp mfa(_), do: nil

  defp endpoint(pid) when is_pid(pid),
    do: %{pid: ProcessRef.to_string(pid), node: Atom.to_string(node(pid))}

  defp endpoint(port) when is_port(port),
    do: %{port: inspect(port), node: Atom.to_string(node(port))}

  defp endpoint(name) when is_atom(name), do: %{name: Atom.to_string(name)}
  defp endpoint(other), do: %{term: inspect(other)}

  defp monitor({:process, pid}) when is_pid(pid), do: Map.put(endpoint(pid), :type, :process)

  defp monitor({:process, {name, node}}),
    do: %{type: :process, name: Atom.to_string(name), node: Atom.to_string(node)}

  defp monitor({:port, port}), do: Map.put(endpoint(port), :type, :port)
  defp monitor(other), do: %{term: inspect(other)}
end
