defmodule ClusterScope.Test.SandboxBench do
  @moduledoc false
  # Runs on a peer for bench/sandbox.exs: timed sandbox operations, and the
  # by-hand baseline a user scripts without ClusterScope (a DynamicSupervisor
  # per node started over :erpc, children started into it, stopped after).

  alias ClusterScope.Test.SandboxWorker

  def timed_run(op, params) do
    {us, result} = :timer.tc(fn -> ClusterScope.run(op, params) end)
    {div(us, 1000), result}
  end

  def by_hand_create(nodes, count) do
    per = div(count, length(nodes))

    {us, sups} =
      :timer.tc(fn ->
        nodes
        |> Enum.map(fn n ->
          Task.async(fn ->
            :erpc.call(n, __MODULE__, :by_hand_local, [per], 60_000)
          end)
        end)
        |> Enum.map(&Task.await(&1, 60_000))
      end)

    {div(us, 1000), sups}
  end

  def by_hand_local(per) do
    {:ok, sup} = DynamicSupervisor.start_link(strategy: :one_for_one)
    Process.unlink(sup)
    for _ <- 1..per, do: {:ok, _} = DynamicSupervisor.start_child(sup, {SandboxWorker, nil})
    sup
  end

  def by_hand_destroy(sups) do
    {us, _} =
      :timer.tc(fn ->
        sups
        |> Enum.map(fn sup ->
          Task.async(fn -> :erpc.call(node(sup), DynamicSupervisor, :stop, [sup], 60_000) end)
        end)
        |> Enum.map(&Task.await(&1, 60_000))
      end)

    div(us, 1000)
  end
end
