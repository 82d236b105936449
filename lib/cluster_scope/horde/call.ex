defmodule ClusterScope.Horde.Call do
  @moduledoc """
  The one way ClusterScope calls Horde: in a process of its own, with a
  deadline, never on behalf of a node the partition detector does not see
  as up.

  Why. `Horde.DynamicSupervisor.which_children/1` and `count_children/1`
  are calls with no timeout that make the supervisor's own process
  (`Horde.DynamicSupervisorImpl`) call every member's local supervisor, one
  after the other, each with no timeout. With one member frozen (SIGSTOP),
  that process waits until Erlang declares the member down (the net tick
  time: a minute by default), and every other call to it - `start_child/2`,
  `Horde.Cluster.members/1` (5 s timeout) - waits or fails meanwhile. A
  debugging tool must never do that to what it observes, so ClusterScope
  never calls those two functions, and every Horde call it makes:

    * runs in a fresh process (`run/2`) that is killed at its deadline, so a
      stuck Horde process costs the caller the deadline and nothing more,
      and the caller's own process (the health monitor, an operation) never
      waits on Horde;
    * reads only this node's Horde processes (`:sys.get_state/2` with the
      deadline, their ETS tables, `Horde.Registry.select/2`,
      `Horde.Cluster.members/1`): none of them makes a Horde process call
      another node. Other nodes' views come through `ClusterScope.Fanout`,
      which skips every node this node's cluster state sees as not `:up`
      (suspected, frozen, unreachable, down: `callable_nodes/1`);
    * never runs inside a Horde process's call path: nothing here is a
      callback Horde invokes, and nothing here blocks a Horde process - a
      system message (`:sys.get_state/2`) is answered between two of its
      messages, and a late answer to a dead caller is dropped.

  Cost: one `spawn_monitor/1` and one receive per call (a few
  microseconds) plus the call itself.
  """

  @default_deadline_ms 2_000

  @typedoc "Why a call gave no answer."
  @type error :: {:timeout, pos_integer()} | {:exit, term()} | {:raise, String.t()}

  @doc "The default deadline of one Horde call, in ms."
  @spec default_deadline() :: pos_integer()
  def default_deadline, do: @default_deadline_ms

  @doc """
  Runs `fun` in a new process and waits at most `deadline_ms` for it.
  Returns `{:ok, value}`, `{:error, {:timeout, deadline_ms}}` (the process
  is killed), `{:error, {:exit, reason}}` or `{:error, {:raise, message}}`.
  Never raises, never links.
  """
  @spec run((() -> term()), pos_integer()) :: {:ok, term()} | {:error, error()}
  def run(fun, deadline_ms \\ @default_deadline_ms)
      when is_function(fun, 0) and is_integer(deadline_ms) and deadline_ms > 0 do
    parent = self()
    tag = make_ref()

    {pid, ref} =
      spawn_monitor(fn ->
        result =
          try do
            {:ok, fun.()}
          catch
            :exit, reason -> {:error, {:exit, reason}}
            :throw, value -> {:error, {:exit, {:throw, value}}}
            :error, reason -> {:error, {:raise, Exception.format_banner(:error, reason)}}
          end

        send(parent, {tag, result})
      end)

    receive do
      {^tag, result} ->
        Process.demonitor(ref, [:flush])
        result

      {:DOWN, ^ref, :process, ^pid, reason} ->
        {:error, {:exit, reason}}
    after
      deadline_ms ->
        Process.demonitor(ref, [:flush])
        Process.exit(pid, :kill)
        # The answer may have arrived between the timeout and the kill.
        receive do
          {^tag, result} -> result
        after
          0 -> {:error, {:timeout, deadline_ms}}
        end
    end
  end

  @doc """
  Reads a local process's state (`:sys.get_state/2`) within the deadline,
  in a process of its own. For Horde processes this is Horde's internal
  state: its shape belongs to Horde 0.10 and may change in another version
  (callers check what they read).
  """
  @spec state(atom() | pid(), pos_integer()) :: {:ok, term()} | {:error, error()}
  def state(server, deadline_ms \\ @default_deadline_ms) do
    run(fn -> :sys.get_state(server, deadline_ms) end, deadline_ms + 100)
  end

  @doc """
  `Horde.Cluster.members/1` of a local registry or supervisor, within the
  deadline: `[{name, node}]`, without status.
  """
  @spec members(atom(), pos_integer()) :: {:ok, [{atom(), node()}]} | {:error, error()}
  def members(name, deadline_ms \\ @default_deadline_ms) do
    run(fn -> apply(Horde.Cluster, :members, [name]) end, deadline_ms)
  end

  @doc """
  Splits `nodes` into those this node's cluster state sees as `:up` (this
  node always is) and those it does not, with their status: Horde is never
  asked about, nor through, a node the partition detector suspects.
  """
  @spec callable_nodes([node()]) :: {[node()], [{node(), atom()}]}
  def callable_nodes(nodes) do
    statuses = ClusterScope.Fanout.node_statuses()

    Enum.reduce(Enum.reverse(nodes), {[], []}, fn n, {ok, skip} ->
      case Map.get(statuses, n, :up) do
        _ when n == node() -> {[n | ok], skip}
        :up -> {[n | ok], skip}
        status -> {ok, [{n, status} | skip]}
      end
    end)
  end

  @doc "A short text for an error of `run/2`."
  @spec describe(error()) :: String.t()
  def describe({:timeout, ms}), do: "did not answer within #{ms} ms"
  def describe({:exit, reason}), do: "exited: #{inspect(reason, limit: 5, printable_limit: 100)}"
  def describe({:raise, message}), do: "raised: #{String.slice(message, 0, 200)}"
  def describe(other), do: inspect(other, limit: 5)
end
