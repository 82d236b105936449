defmodule ClusterScope.Cluster.GlobalWatcher do
  @check_ms 5_000

  @moduledoc """
  Attributes the links that `global` cuts.

  Since OTP 25, `global` disconnects nodes on its own to prevent overlapping
  partitions (`prevent_overlapping_partitions`, on by default): when a node
  reports that it lost its connection to another, every node that still
  reaches that other one asks it to disconnect (`{remove_connection, Node}`
  to its `global_name_server`), and the other disconnects. Erlang only
  reports a bare `disconnect` (on the side that disconnected) or
  `connection_closed` (on the side that asked), and `global` says why only in
  a log warning.

  ## The signal: a meta trace pattern on `global:handle_nodedown/3`

  On both sides `global` then calls its own `handle_nodedown(Node, State,
  remove_connection)` (OTP 25 to 27; `remove_connection` is passed there
  only by these two code paths). `ClusterScope.Cluster.State` puts a *meta*
  trace pattern on that function whose match spec keeps only
  `remove_connection` calls, with itself as the meta tracer, and takes each
  call as a cut of the link to `Node`. This does not depend on the logger's
  level (production nodes often run at `:error`, where `global`'s warning is
  dropped before any handler sees it: `global` logs with `logger:log/3` and
  no module metadata, so a module-level override cannot bring it back) nor
  on the text of the warning.

  Why it is safe in production:

    * a meta pattern sets no trace flag on any process, so it never takes a
      process from another tracer (`dbg`, `recon_trace`, ClusterScope's own
      sessions) and costs nothing to processes that do not call the function;
    * the function runs only when `global` handles a nodedown (a few times
      per node per membership change), and the match spec sends a message
      only for the partition-prevention cuts; the message carries `global`'s
      state (a few words per known node), once per cut;
    * it never steals the function from another meta tracer: a user's trace
      session on it keeps it, and the pattern comes back (checked every
      #{div(@check_ms, 1_000)} s, one `erlang:trace_info/2`) once it is free
      again: after `dbg:ctp/0`, a reload of `global` or the end of that
      session;
    * setting it costs one code barrier, once at start and after each loss;
      the state removes it when it stops.

  ## The fallback: a logger handler

  The `:logger` handler this module also installs watches for the warning
  (`"'global' at node ~p ~s node ~p in order to prevent overlapping
  partitions"`) and tells the state the same thing. It only matters while
  the pattern is not in place (held by another tracer), or for the cuts of
  global-group members (`ignore_node`, not `remove_connection`), and only
  when the level lets the warning through. It runs in the process that
  logs, for warnings only, does one string match per warning, and never
  raises (a handler that raises is removed by `:logger`; this one catches
  everything).
  """

  @handler :cluster_scope_global_watcher
  @mfa {:global, :handle_nodedown, 3}

  @doc "Adds the logger handler (idempotent)."
  @spec install() :: :ok
  def install do
    case :logger.add_handler(@handler, __MODULE__, %{level: :warning}) do
      :ok -> :ok
      {:error, {:already_exist, _}} -> :ok
      {:error, _} -> :ok
    end
  end

  @doc """
  Makes `tracer` the meta tracer of `global`'s partition-prevention cuts,
  unless another live process holds that function's meta pattern. Returns
  `:watching` (the pattern is `tracer`'s), `{:held, pid}` (another tracer
  has it) or `:unavailable` (no such function in this OTP release).
  Cost: one `erlang:trace_info/2`; a code barrier when the pattern is set.
  """
  @spec watch(pid()) :: :watching | {:held, pid() | port()} | :unavailable
  def watch(tracer) when is_pid(tracer) do
    case :erlang.trace_info(@mfa, :meta) do
      {:meta, ^tracer} ->
        :watching

      {:meta, other} when is_pid(other) or is_port(other) ->
        if alive?(other), do: {:held, other}, else: set(tracer)

      _ ->
        set(tracer)
    end
  catch
    _, _ -> :unavailable
  end

  @doc """
  Removes the pattern when `tracer` holds it (the state stopping), so no
  breakpoint is left in `global` once ClusterScope is gone. Always `:ok`.
  """
  @spec unwatch(pid()) :: :ok
  def unwatch(tracer) when is_pid(tracer) do
    case :erlang.trace_info(@mfa, :meta) do
      {:meta, ^tracer} -> :erlang.trace_pattern(@mfa, false, [:meta])
      _ -> :ok
    end

    :ok
  catch
    _, _ -> :ok
  end

  @doc "How often the pattern is checked (milliseconds)."
  @spec check_interval_ms() :: pos_integer()
  def check_interval_ms, do: @check_ms

  @doc """
  The node whose link `global` cut, from a message the meta pattern sent:
  `{:ok, node}`, or `:ignore` for any other message.
  """
  @spec cut(term()) :: {:ok, node()} | :ignore
  def cut({tag, _pid, :call, {:global, :handle_nodedown, [node, _state, :remove_connection]}, _})
      when tag in [:trace, :trace_ts] and is_atom(node) and node != node(),
      do: {:ok, node}

  def cut({:trace, _pid, :call, {:global, :handle_nodedown, [node, _state, :remove_connection]}})
      when is_atom(node) and node != node(),
      do: {:ok, node}

  def cut(_message), do: :ignore

  defp set(tracer) do
    ms = [{[:_, :_, :remove_connection], [], []}]

    case :erlang.trace_pattern(@mfa, ms, [{:meta, tracer}]) do
      0 -> :unavailable
      _ -> :watching
    end
  end

  defp alive?(pid) when is_pid(pid) and node(pid) == node(), do: Process.alive?(pid)
  defp alive?(port) when is_port(port), do: Port.info(port) != nil
  defp alive?(_), do: true

  @doc false
  # :logger handler callback.
  def log(%{msg: msg}, _config) do
    case msg do
      # "'global' at node ~p ~s node ~p in order to prevent overlapping
      # partitions", [node(), What, Node] (OTP 25; older releases had no ~s).
      {format, [a | rest]} when (is_list(format) or is_binary(format)) and rest != [] ->
        text = IO.chardata_to_string(format)
        b = List.last(rest)

        if String.contains?(text, "overlapping partitions") and is_atom(a) and is_atom(b) do
          ClusterScope.Cluster.State.global_disconnect(a, b)
        end

      _ ->
        :ok
    end

    :ok
  catch
    _, _ -> :ok
  end

  def log(_event, _config), do: :ok
end
