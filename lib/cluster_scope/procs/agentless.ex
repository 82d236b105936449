defmodule ClusterScope.Procs.Agentless do
  @moduledoc """
  Process rows from a connected node that runs no ClusterScope.

  The caller loads `ClusterScope.Agent.Processes.Rows` (object code that calls only
  OTP) onto that node with `:code.load_binary/3` when the node has no
  module of that name, then runs its `stream_v1/3` there: the node reads its
  own processes and streams rows back in acknowledged chunks, and the caller
  pushes them into a Rust snapshot of its own and aggregates.
  `ClusterScope.Redact` (also OTP-only) is loaded beside it, so a process's
  state read there is redacted there. A node that
  already has a `Rows` module of another ClusterScope version is used as
  long as it exports `stream_v1/3`; otherwise it is reported, not
  overwritten.

  Cost: the rows of the whole node cross the network (about 200 bytes per
  process), and the caller's snapshot holds them until it is dropped; one
  chunk at a time is in flight, so neither side's heap grows with the
  process count beyond the remote pid list.
  """

  alias ClusterScope.{Fanout, Native, Redact}
  alias ClusterScope.Agent.Processes.Rows

  @chunk 500

  @doc """
  Makes `Rows` (and `ClusterScope.Redact`, which its `info_v2/4` uses)
  callable on `node`: `:ok`, or `{:error, reason}` (for example an
  incompatible `Rows` already loaded there). Every call to the node goes
  through `ClusterScope.Fanout.rpc/5`.
  """
  @spec ensure_rows(node(), timeout()) :: :ok | {:error, term()}
  def ensure_rows(node, timeout) do
    with :ok <- ensure_module(node, Rows, {:stream_v1, 3}, timeout) do
      ensure_module(node, Redact, {:term, 2}, timeout)
    end
  end

  @doc """
  Loads `mod`'s object code (an OTP-only module) onto `node` unless a
  module of that name is there; one already there must export `fun/arity`
  (a later version of ours does; another one is reported, never
  overwritten). Used for `Rows` and by the node views
  (`ClusterScope.NodeViews.Ranking`).
  """
  @spec ensure_module(node(), module(), {atom(), arity()}, timeout()) :: :ok | {:error, term()}
  def ensure_module(node, mod, {fun, arity}, timeout) do
    with {:ok, loaded} <- rpc(node, :code, :ensure_loaded, [mod], timeout) do
      case loaded do
        {:module, ^mod} ->
          case rpc(node, :erlang, :function_exported, [mod, fun, arity], timeout) do
            {:ok, true} -> :ok
            {:ok, false} -> {:error, :incompatible_version}
            error -> error
          end

        {:error, _} ->
          {^mod, binary, file} = :code.get_object_code(mod)

          case rpc(node, :code, :load_binary, [mod, file, binary], timeout) do
            {:ok, {:module, ^mod}} -> :ok
            {:ok, {:error, reason}} -> {:error, {:load_failed, reason}}
            error -> error
          end
      end
    end
  end

  defp rpc(node, m, f, a, timeout) do
    case Fanout.rpc(node, m, f, a, timeout) do
      {:ok, value} -> {:ok, value}
      {:error, {:erpc, reason}} -> {:error, reason}
      {:error, {:exception, reason, _}} -> {:error, {:error, reason}}
      {:error, {kind, reason}} -> {:error, {kind, reason}}
    end
  end

  @doc """
  Collects `node`'s processes into a snapshot on this node (integer keys).
  Gives up after `timeout` ms, stopping the remote stream.
  """
  @spec collect(node(), timeout()) :: {:ok, reference()} | {:error, term()}
  def collect(node, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout

    with :ok <- ensure_rows(node, timeout),
         snapshot when is_reference(snapshot) <- Native.procs_snapshot_new() do
      ref = make_ref()
      pid = Fanout.spawn(node, Rows, :stream_v1, [self(), ref, @chunk])
      monitor = Process.monitor(pid)

      try do
        receive_rows(snapshot, ref, pid, monitor, deadline)
      after
        Process.demonitor(monitor, [:flush])
        Process.exit(pid, :kill)
      end
    end
  end

  defp receive_rows(snapshot, ref, pid, monitor, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^ref, :rows, rows} ->
        case Native.procs_snapshot_push(snapshot, rows) do
          :ok ->
            send(pid, {ref, :ack})
            receive_rows(snapshot, ref, pid, monitor, deadline)

          {:error, _} = error ->
            error
        end

      {^ref, :done, _count} ->
        {:ok, snapshot}

      {:DOWN, ^monitor, :process, ^pid, reason} ->
        {:error, {:stream_stopped, reason}}
    after
      wait -> {:error, :timeout}
    end
  end
end
