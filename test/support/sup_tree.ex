defmodule ClusterScope.Test.SupTree do
  @moduledoc false
  # A small supervision tree for the supervision view's tests, started
  # unlinked (so it outlives the process that asks for it, such as a peer's
  # standard I/O call): a root registered as `name` (one_for_one, 7
  # restarts in 9 s) with a worker `:worker`, a child supervisor `:inner`
  # (one_for_all) with two workers, and a DynamicSupervisor `:dynamic`
  # with `dynamic` children.

  def start(name, dynamic \\ 0) do
    parent = self()

    spawn(fn ->
      children = [
        %{id: :worker, start: {Agent, :start_link, [fn -> :root_worker end]}},
        %{
          id: :inner,
          type: :supervisor,
          start:
            {Supervisor, :start_link,
             [
               [
                 %{id: :a, start: {Agent, :start_link, [fn -> :a end]}},
                 %{id: :b, start: {Agent, :start_link, [fn -> :b end]}}
               ],
               [strategy: :one_for_all]
             ]}
        },
        %{
          id: :dynamic,
          type: :supervisor,
          start: {DynamicSupervisor, :start_link, [[strategy: :one_for_one, max_restarts: 11]]}
        }
      ]

      {:ok, sup} =
        Supervisor.start_link(children, strategy: :one_for_one, max_restarts: 7, max_seconds: 9)

      Process.unlink(sup)
      Process.register(sup, name)
      dyn = child(sup, :dynamic)
      for i <- 1..dynamic//1, do: DynamicSupervisor.start_child(dyn, {Agent, fn -> i end})
      send(parent, {:sup_tree, sup})
    end)

    receive do
      {:sup_tree, sup} -> sup
    after
      10_000 -> raise "the test tree did not start"
    end
  end

  def child(sup, id) do
    {^id, pid, _, _} = Enum.find(Supervisor.which_children(sup), &(elem(&1, 0) == id))
    pid
  end

  def stop(name) do
    case Process.whereis(name) do
      nil ->
        :ok

      pid ->
        # A suspended child would hold the shutdown: resume everything first.
        for {_, c, :supervisor, _} <- Supervisor.which_children(pid), is_pid(c) do
          :sys.resume(c)
        end

        Supervisor.stop(pid)
    end
  catch
    _, _ -> :ok
  end
end
