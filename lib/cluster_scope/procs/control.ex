defmodule ClusterScope.Procs.Control do
  @moduledoc """
  One process, wherever it lives: its full info, killing it, sending it a
  message. The same calls work on any node of the cluster, with or without
  ClusterScope there (`ClusterScope.Agent.Processes.Rows` is loaded onto a node that
  lacks it), and every answer names the process's node.

  ## Protection

  What a request may touch is decided on the process's node, from what the
  process is (`ClusterScope.Agent.Processes.Rows.protection_v1/1`), never from a list
  of names kept here:

    * **vital** processes (`init`, `auth`, `net_kernel`,
      `global_name_server`, `code_server`, `application_controller`, every
      process `init` started itself and every process whose group leader
      is `init`, such as `erl_prim_loader`) are never killed or sent to,
      whatever the request and the settings;
    * **protected** processes (the runtime's applications, ERTS-level and
      max-priority processes, application masters and top supervisors,
      processes running the runtime's server code such as `peer`
      controllers, and ClusterScope's own) are refused unless the request
      says `force: true` *and* this node's `allow_dangerous_actions` is
      `true` (off by default);
    * `force: true` is refused outright while `allow_dangerous_actions` is
      off, whatever the target, with a `forbidden` error naming the option.

  A mistyped pid must not take down the node's code server, a stray
  message must not crash a `peer` controller (and with it every node it
  started), and the tool the operator is using to repair a node must not
  be the thing that breaks it.

  Every call to another node goes through `ClusterScope.Fanout.rpc/5`.
  A process's state and a call's reply are redacted on the process's own
  node (`Rows.info_v2/4`, `Rows.call_v1/5`: its cookies, this node's
  `redact_keys` and tokens) before they leave it, and again here with this
  node's rules before they are mapped to JSON.
  """

  alias ClusterScope.{Config, Fanout, ProcessRef, Secrets}
  alias ClusterScope.Agent.Processes.Rows
  alias ClusterScope.Procs.{Agentless, Terms}

  @doc "The pid a reference names, resolved on its node (no atom created)."
  @spec pid(ProcessRef.t()) :: {:ok, pid()} | {:error, term()}
  def pid(%ProcessRef{node: node, id: id, serial: serial} = ref) do
    text = ~c"<0.#{id}.#{serial}>"

    if node == node() do
      {:ok, :erlang.list_to_pid(text)}
    else
      case Fanout.rpc(node, :erlang, :list_to_pid, [text], timeout()) do
        {:ok, pid} -> {:ok, pid}
        # Numbers beyond the VM's pid range name no process.
        {:error, {:exception, :badarg, _}} -> {:error, not_found(ref)}
        {:error, {:erpc, reason}} -> {:error, {:node_unavailable, node, reason}}
        {:error, other} -> {:error, {:internal, inspect(other, limit: 10)}}
      end
    end
  rescue
    ArgumentError -> {:error, not_found(ref)}
  end

  @doc """
  Everything about a process: the fields of a process list row, links and
  monitors with their nodes, ancestors, trap_exit, priority, and its state
  through `:sys.get_state/2` when it is an OTP behaviour (`state_timeout`
  ms, 0 to skip), redacted on its node; `protected` says why a request
  may not touch it and `protection` is `:vital`, `:system` or `:none`.
  """
  @spec info(ProcessRef.t(), non_neg_integer()) :: {:ok, map()} | {:error, term()}
  def info(%ProcessRef{node: node} = ref, state_timeout) do
    with {:ok, pid} <- pid(ref),
         :ok <- rows_on(node),
         {:ok, info} <- remote_info(node, pid, state_timeout) do
      case info do
        :undefined -> {:error, not_found(ref)}
        info -> {:ok, present_info(pid, info)}
      end
    end
  end

  # info_v2 redacts on the node with its cookies plus our keys and tokens;
  # a node with an older ClusterScope only has info_v1 (present_info and
  # the runner redact what it sends with this node's rules).
  defp remote_info(node, pid, state_timeout) do
    args = [pid, state_timeout, Config.get(:redact_keys), Secrets.tokens()]

    case remote(node, Rows, :info_v2, args, state_timeout) do
      {:error, :undef} -> remote(node, Rows, :info_v1, [pid, state_timeout], state_timeout)
      other -> other
    end
  end

  @doc """
  Sends an exit signal to the process (`reason` `"kill"`, `"shutdown"`,
  `"normal"` or any text, sent as `{:shutdown, text}`) and waits up to
  `wait_ms` for it to exit. Refused for vital processes, and for protected
  ones unless `force` where dangerous actions are allowed (see the module
  doc).
  """
  @spec kill(ProcessRef.t(), String.t(), boolean(), non_neg_integer()) ::
          {:ok, map()} | {:error, term()}
  def kill(%ProcessRef{} = ref, reason, force, wait_ms \\ 1_000) do
    with {:ok, pid, protection} <- target(ref, force) do
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
         registered_name: name(protection.registered_name),
         reason: inspect(exit_reason),
         exited: elem(exited, 0),
         exit_reason: exited |> elem(1) |> then(&if(&1, do: inspect(&1))),
         forced: protection.level != :none
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
    with {:ok, pid, protection} <- target(ref, force) do
      base = %{
        pid: ProcessRef.to_string(ref),
        node: Atom.to_string(ref.node),
        mode: mode,
        forced: protection.level != :none
      }

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

  # The call is made on the process's node (Rows.call_v1), so the reply is
  # redacted there before it leaves; a node with an older ClusterScope is
  # called from here and its reply redacted with this node's rules.
  defp call(pid, message, timeout_ms, base) do
    node = node(pid)
    args = [pid, message, timeout_ms, Config.get(:redact_keys), Secrets.tokens()]

    answer =
      case remote(node, Rows, :call_v1, args, timeout_ms) do
        {:error, :undef} -> call_here(pid, message, timeout_ms)
        {:ok, answer} -> answer
        {:error, _} = error -> error
      end

    case answer do
      {:reply, reply, call_us} ->
        reply = Secrets.redact(reply)

        {:ok,
         Map.merge(base, %{
           delivered: true,
           reply: Terms.to_json(reply),
           reply_text: inspect(reply, limit: 50, printable_limit: 4_096),
           call_us: call_us
         })}

      {:reply_too_large, bytes, text, call_us} ->
        {:ok,
         Map.merge(base, %{
           delivered: true,
           reply: nil,
           reply_error: "reply too large to copy (#{bytes} bytes)",
           reply_text: Secrets.redact(text),
           call_us: call_us
         })}

      {:timeout, _} ->
        {:error,
         {:timeout, "#{base.pid} did not reply within #{timeout_ms} ms",
          %{pid: base.pid, timeout_ms: timeout_ms}}}

      {:exit, reason} ->
        {:error,
         {:unavailable,
          "the call to #{base.pid} failed: #{inspect(reason, limit: 10)} (is it a GenServer?)",
          %{pid: base.pid}}}

      {:error, _} = error ->
        error
    end
  end

  defp call_here(pid, message, timeout_ms) do
    started = System.monotonic_time(:microsecond)
    reply = GenServer.call(pid, message, timeout_ms)
    {:reply, reply, System.monotonic_time(:microsecond) - started}
  catch
    :exit, {:timeout, _} -> {:timeout, timeout_ms}
    :exit, {reason, _} -> {:exit, Secrets.redact(reason)}
  end

  defp target(%ProcessRef{} = ref, true) do
    if Config.get(:allow_dangerous_actions) do
      target(ref, :allowed)
    else
      text = ProcessRef.to_string(ref)

      {:error,
       {:forbidden,
        "refused: force is allowed only when dangerous actions are: set " <>
          "config :cluster_scope, allow_dangerous_actions: true on #{node()} " <>
          "(it is false); without force, #{text} is still refused if it is protected",
        %{pid: text, force: true, allow_dangerous_actions: false}}}
    end
  end

  defp target(%ProcessRef{node: node} = ref, force) do
    with {:ok, pid} <- pid(ref),
         :ok <- rows_on(node),
         {:ok, protection} <- remote_protection(node, pid) do
      text = ProcessRef.to_string(ref)

      case protection do
        :undefined ->
          {:error, not_found(ref)}

        %{level: :none} ->
          {:ok, pid, protection}

        %{level: :vital, reason: why} ->
          {:error,
           {:forbidden,
            "refused: #{text} is never killed or sent to by a request (#{why}), " <>
              "with or without force", %{pid: text, protected: why, vital: true}}}

        %{level: :system} when force == :allowed ->
          {:ok, pid, protection}

        %{level: :system, reason: why} ->
          {:error,
           {:forbidden,
            "refused: #{text} is protected (#{why}); force: true reaches it only where " <>
              "allow_dangerous_actions is true", %{pid: text, protected: why, force: false}}}
      end
    end
  end

  # A node with an older ClusterScope cannot say what the process is: its
  # processes are treated as protected.
  defp remote_protection(node, pid) do
    case remote(node, Rows, :protection_v1, [pid], 0) do
      {:error, :undef} ->
        {:ok,
         %{
           registered_name: [],
           level: :system,
           reason: "#{node} runs a ClusterScope too old to tell what the process is"
         }}

      other ->
        other
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
    case Fanout.rpc(node, mod, fun, args, timeout() + extra_ms) do
      {:ok, value} ->
        {:ok, value}

      {:error, {:erpc, reason}} ->
        {:error, {:node_unavailable, node, reason}}

      # The function itself is missing there (an older Rows).
      {:error, {:exception, :undef, [{^mod, ^fun, _, _} | _]}} ->
        {:error, :undef}

      {:error, {:exception, reason, _}} ->
        {:error, {:internal, inspect(reason, limit: 10)}}

      {:error, other} ->
        {:error, {:internal, inspect(other, limit: 10)}}
    end
  end

  defp timeout, do: ClusterScope.Fanout.default_timeout()

  defp not_found(ref) do
    text = ProcessRef.to_string(ref)
    {:not_found, "no process #{text} (it has exited or never existed)", %{pid: text}}
  end

  defp present_info(pid, info) do
    row = info.row

    # Redacted again with this node's rules: a node with an older
    # ClusterScope sends it as it is (info_v1), and a key of a map that
    # is not all strings is no longer a key once mapped to JSON.
    state =
      case Secrets.redact(info.state) do
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
        protected: protected(info),
        protection: protection_level(info)
      },
      state
    )
  end

  defp protected(%{protection: %{level: :none}}), do: nil
  defp protected(%{protection: %{reason: why}}), do: why
  defp protected(_), do: nil

  defp protection_level(%{protection: %{level: level}}), do: level
  defp protection_level(_), do: nil

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
