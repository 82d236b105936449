defmodule ClusterScope.PgMembership do
  @moduledoc """
  Membership of a `:pg` group that outlives a restart of the scope process.

  `:pg` forgets every membership when its scope process dies; a member that
  joined once is then invisible (an agent that nobody finds, a sandbox part
  no node sees). A member joins with `join/3`, which also monitors the
  scope; its `handle_info/2` passes `{:DOWN, ...}` of the scope and
  `{:cluster_scope_pg_rejoin, ...}` to `handle/2`, which joins again once
  the restarted scope runs (polling every 50 ms until then).

  Cost: one monitor per member; nothing while the scope lives.
  """

  @doc "Joins `group` of `scope` and monitors the scope."
  @spec join(atom(), term(), pid()) :: :ok
  def join(scope, group, pid \\ self()) do
    :ok = :pg.join(scope, group, pid)
    Process.monitor(scope)
    :ok
  end

  @doc """
  For a member's `handle_info/2`: `true` when the message was about its
  scope going or coming back (then handled), `false` otherwise.
  """
  @spec handle(term(), {atom(), term()}) :: boolean()
  def handle({:DOWN, _ref, :process, {scope, _node}, _reason}, {scope, group}) do
    send(self(), {:cluster_scope_pg_rejoin, scope, group})
    true
  end

  def handle({:cluster_scope_pg_rejoin, scope, group}, {scope, group}) do
    if Process.whereis(scope),
      do: join(scope, group),
      else: Process.send_after(self(), {:cluster_scope_pg_rejoin, scope, group}, 50)

    true
  end

  def handle(_msg, _membership), do: false
end
