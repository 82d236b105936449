defmodule ClusterScope.StateKeeper do
  @moduledoc """
  Keeps ClusterScope's critical state alive across a crash of the process
  that owns it (requirement 10: the debugging tool survives its own
  failures).

  A server that must not lose its state (the cluster's event history and
  subscribers, the health monitor's thresholds, alerts and subscribers,
  trace sessions, sandbox tombstones, ...) keeps it in an ETS table it gets
  from `claim/2`: the table is the server's, with this keeper as its heir.
  When the server dies, ETS hands the table to the keeper, which holds it
  untouched; when the supervisor restarts the server, `claim/2` gives the
  same table back, with everything in it. The keeper does nothing else, so
  there is nothing in it to crash.

  If the keeper itself is killed, the tables stay with their (living)
  owners; the restarted keeper asks each owner to name it heir again
  (`{:cluster_scope_keeper, pid}`, handled by `handle_heir/2` in the
  owner). Only a crash of an owner while no keeper runs loses its table.

  Cost: a call per server start and nothing at run time.
  """

  use GenServer

  @names [
    :cluster_scope_keep_cluster_state,
    ClusterScope.Health.Monitor,
    :cluster_scope_keep_trace_sessions,
    :cluster_scope_keep_sandbox_manager,
    ClusterScope.Logs,
    ClusterScope.Metrics.OperationLatency,
    :cluster_scope_keep_stream_hub
  ]

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The names of the tables a keeper holds for their owners."
  @spec names() :: [atom()]
  def names, do: @names

  @doc """
  The table `name` for the calling process: the one its previous life left
  with the keeper (`{:kept, table}`), or a new one made with `ets_opts`
  (`{:new, table}`). Either way the caller owns it and the keeper is its heir.
  Without a running keeper the table is new and has no heir.
  """
  @spec claim(atom(), list()) :: {:kept | :new, :ets.tid() | atom()}
  def claim(name, ets_opts) when name in @names do
    case GenServer.whereis(__MODULE__) do
      nil ->
        {:new, :ets.new(name, ets_opts)}

      keeper ->
        case GenServer.call(keeper, {:claim, name, self()}) do
          {:kept, table} ->
            # The table arrives as an 'ETS-TRANSFER' message too: drop it here.
            receive do
              {:"ETS-TRANSFER", ^table, _, _} -> :ok
            after
              0 -> :ok
            end

            :ets.setopts(table, {:heir, keeper, name})
            {:kept, table}

          :none ->
            {:new, :ets.new(name, [{:heir, keeper, name} | ets_opts])}
        end
    end
  catch
    :exit, _ -> {:new, :ets.new(name, ets_opts)}
  end

  @doc """
  For an owner's `handle_info/2`: a restarted keeper asks to be heir again.
  Returns `true` when the message was the keeper's.
  """
  @spec handle_heir(term(), :ets.tid() | atom()) :: boolean()
  def handle_heir({:cluster_scope_keeper, keeper}, table) do
    name = :ets.info(table, :name)
    if name in @names, do: :ets.setopts(table, {:heir, keeper, name})
    true
  catch
    _, _ -> true
  end

  def handle_heir({:"ETS-TRANSFER", _, _, _}, _table), do: true
  def handle_heir(_msg, _table), do: false

  # -- server ------------------------------------------------------------------

  @impl true
  def init(_opts) do
    # Tables whose owners outlived a previous keeper: ask to be their heir.
    for name <- @names, :ets.whereis(name) != :undefined do
      case :ets.info(name, :owner) do
        owner when is_pid(owner) -> send(owner, {:cluster_scope_keeper, self()})
        _ -> :ok
      end
    end

    {:ok, %{}}
  end

  @impl true
  def handle_call({:claim, name, pid}, _from, held) do
    # The table may be ours before its 'ETS-TRANSFER' message is read (the
    # owner died and was restarted at once): ownership is what counts.
    table =
      case :ets.whereis(name) do
        :undefined -> nil
        t -> if :ets.info(t, :owner) == self(), do: t
      end

    case table do
      nil ->
        {:reply, :none, Map.delete(held, name)}

      table ->
        :ets.give_away(table, pid, name)
        {:reply, {:kept, table}, Map.delete(held, name)}
    end
  end

  @impl true
  def handle_info({:"ETS-TRANSFER", table, _from, name}, held),
    do: {:noreply, Map.put(held, name, table)}

  def handle_info(_msg, held), do: {:noreply, held}
end
