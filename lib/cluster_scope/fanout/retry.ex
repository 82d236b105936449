defmodule ClusterScope.Fanout.Retry do
  @moduledoc """
  The run context `ClusterScope.Fanout` reads: the operation's deadline,
  whether it is an idempotent read (so a transient node error may be retried), and
  where to report the nodes that answered. Pure apart from the process
  dictionary.

  `ClusterScope.Operation.Runner` puts the context in the operation's
  process; a task the operation starts finds it through `$callers`, and
  any other process can be given it with `run/2`. Without a context
  (background work: heartbeats, managers, a shared collection in
  `ClusterScope.Agent.Processes.Snapshots`) nothing is retried or reported.

  ## What is retried

  Only errors of the network or of a restarting server, per node: no
  connection (`noconnection`), no answer in time (`timeout`), or a
  ClusterScope process that is not there this instant (`noproc`: a server
  restarting under its supervisor). Never an answer, an exception raised by
  bad input, or a version mismatch. At most `max_attempts/0` attempts per
  node, waiting 100, 200, 400 ms (`backoff_ms/1`) between them, and only
  while the next attempt can still end before the deadline: a retried call
  never makes the operation overrun its timeout. A call's own timeout is cut
  to what is left.
  """

  @key :cluster_scope_run
  @max_attempts 4
  @base_ms 100
  # Left to the runner after the last attempt, to format and reply.
  @margin_ms 50
  # An attempt that cannot have this long is not made.
  @min_attempt_ms 100

  @typedoc "The context of one operation run."
  @type t :: %{
          optional(:deadline) => integer() | nil,
          optional(:idempotent) => boolean(),
          optional(:report_to) => pid() | nil,
          optional(:ref) => reference() | nil
        }

  @doc "Sets this process's run context (the runner does, in the operation's process)."
  @spec put(t() | nil) :: :ok
  def put(nil) do
    Process.delete(@key)
    :ok
  end

  def put(context) when is_map(context) do
    Process.put(@key, context)
    :ok
  end

  @doc """
  This process's run context, or that of the process that started it
  (`Task.async/1` and friends record it in `$callers`; up to three levels
  up, on this node), or `nil`. Reading a caller's costs one
  `Process.info/2` of its (small) dictionary.
  """
  @spec get() :: t() | nil
  def get do
    case Process.get(@key) do
      nil -> from_callers(Process.get(:"$callers", []), 3)
      context -> context
    end
  end

  defp from_callers([pid | rest], left) when is_pid(pid) and left > 0 and node(pid) == node() do
    with {:dictionary, dict} <- Process.info(pid, :dictionary),
         {@key, context} <- List.keyfind(dict, @key, 0) do
      context
    else
      _ -> from_callers(rest, left - 1)
    end
  end

  defp from_callers(_, _), do: nil

  @doc """
  Runs `fun` with `context` as this process's run context: for a process an
  operation starts (`Task.async(fn -> Retry.run(ctx, fun) end)`).
  """
  @spec run(t() | nil, (() -> result)) :: result when result: term()
  def run(context, fun) do
    put(context)
    fun.()
  end

  @doc "The most attempts of one call to one node."
  @spec max_attempts() :: pos_integer()
  def max_attempts, do: @max_attempts

  @doc "The wait before attempt `n + 1` (`n` >= 1): 100, 200, 400 ms."
  @spec backoff_ms(pos_integer()) :: pos_integer()
  def backoff_ms(n) when n >= 1, do: @base_ms * Integer.pow(2, n - 1)

  @doc """
  Whether one node's result, in the shape of the results of erpc's multicall
  (`{:error, {:erpc, :timeout}}`, `{:exit, {:exception, reason}}`, ...), is
  a transient failure worth another attempt.
  """
  @spec transient?(term()) :: boolean()
  def transient?({:error, {:erpc, reason}}) when reason in [:noconnection, :timeout], do: true
  def transient?({:exit, {:exception, {:noproc, _}}}), do: true
  def transient?({:exit, {:exception, :noproc}}), do: true
  def transient?(_), do: false

  @doc """
  Whether attempt `n + 1` may be made under `context` (idempotent, attempts
  left, time left for the wait and a useful attempt), and with what call
  timeout: `{:retry, wait_ms, timeout}` or `:stop`.
  """
  @spec next(t() | nil, pos_integer(), timeout(), integer()) ::
          {:retry, non_neg_integer(), pos_integer()} | :stop
  def next(context, n, timeout, now_ms) do
    with %{idempotent: true, deadline: deadline} when is_integer(deadline) <- context,
         true <- n < @max_attempts do
      wait = backoff_ms(n)
      left = deadline - @margin_ms - now_ms - wait

      if left >= @min_attempt_ms,
        do: {:retry, wait, min(timeout, left)},
        else: :stop
    else
      _ -> :stop
    end
  end

  @doc "Tells the run that `nodes` answered (a message to the runner, when there is one)."
  @spec answered([node()]) :: :ok
  def answered([]), do: :ok

  def answered(nodes) do
    case get() do
      %{report_to: pid, ref: ref} when is_pid(pid) ->
        send(pid, {@key, ref, nodes})
        :ok

      _ ->
        :ok
    end
  end

  @doc """
  Collects what `answered/1` sent for `ref` (the runner, after the run):
  the nodes that answered, sorted, without duplicates.
  """
  @spec collect(reference()) :: [node()]
  def collect(ref), do: collect(ref, [])

  defp collect(ref, acc) do
    receive do
      {@key, ^ref, nodes} -> collect(ref, nodes ++ acc)
    after
      0 -> acc |> Enum.uniq() |> Enum.sort()
    end
  end
end
