defmodule ClusterScope.Horde.RestartTest do
  # Real Horde 0.10 in the test VM (ERL_LIBS=/tmp/3p/lib): Horde's processes
  # killed and restarted by their supervisor again and again while
  # ClusterScope reads them (the operations, the health collector). Every
  # read answers a value or an error naming the registry or supervisor;
  # nothing crashes the caller, ClusterScope's own processes, or the host's
  # Horde tree beyond what the kills did.
  use ExUnit.Case, async: false

  @moduletag :horde

  @registry ClusterScope.Test.RestartReg
  @supervisor ClusterScope.Test.RestartSup

  setup do
    {:ok, _} = Application.ensure_all_started(:horde)
    parent = self()

    holder =
      spawn(fn ->
        {:ok, root} =
          Supervisor.start_link(
            [
              apply(Horde.Registry, :child_spec, [[name: @registry, keys: :unique]]),
              apply(Horde.DynamicSupervisor, :child_spec, [
                [name: @supervisor, strategy: :one_for_one]
              ])
            ],
            strategy: :one_for_one,
            max_restarts: 10_000,
            max_seconds: 1
          )

        send(parent, {:root, root})
        Process.sleep(:infinity)
      end)

    assert_receive {:root, root}, 10_000

    for i <- 1..20 do
      {:ok, _} =
        apply(Horde.DynamicSupervisor, :start_child, [
          @supervisor,
          %{id: i, start: {Agent, :start_link, [fn -> i end]}}
        ])
    end

    on_exit(fn ->
      if Process.alive?(root) do
        Process.unlink(holder)
        Supervisor.stop(root)
      end

      Process.exit(holder, :kill)
    end)

    %{root: root}
  end

  test "Horde processes killed while ClusterScope scans: answers or errors, never a crash", ctx do
    watched =
      for name <- [ClusterScope.Health.Monitor, ClusterScope.Operation.Registry],
          pid = Process.whereis(name),
          do: {name, pid}

    assert watched != []

    killer =
      spawn(fn ->
        Stream.repeatedly(fn ->
          for name <- [@registry, @supervisor, Module.concat(@supervisor, ProcessesSupervisor)] do
            case Process.whereis(name) do
              nil -> :ok
              pid -> Process.exit(pid, :kill)
            end
          end

          Process.sleep(5)
        end)
        |> Stream.run()
      end)

    deadline = System.monotonic_time(:millisecond) + 2_000

    results =
      Stream.repeatedly(fn ->
        [
          ClusterScope.Horde.Inspect.local_summary(),
          ClusterScope.run("horde_registry_inspect", %{}),
          ClusterScope.run("horde_registry_inspect", %{"registry" => inspect(@registry)}),
          ClusterScope.run("horde_supervisor_inspect", %{"supervisor" => inspect(@supervisor)}),
          ClusterScope.run("horde_cluster_members", %{}),
          ClusterScope.Health.Collectors.horde()
        ]
      end)
      |> Stream.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
      |> Enum.to_list()
      |> List.flatten()

    Process.exit(killer, :kill)

    assert results != []

    for r <- results do
      case r do
        {:ok, data} -> assert is_map(data)
        {:error, %ClusterScope.Error{code: code}} -> assert code in [:not_found, :unavailable]
        %{node: _, supervisors: _, registries: _} -> :ok
        %{values: _} -> :ok
        nil -> :ok
        other -> flunk("unexpected: #{inspect(other, limit: 20)}")
      end
    end

    for {name, pid} <- watched, do: assert(Process.whereis(name) == pid, "#{name} restarted")
    assert Process.alive?(ctx.root)

    # Once the kills stop, Horde comes back and ClusterScope reads it again.
    assert Enum.any?(1..50, fn _ ->
             Process.sleep(100)

             match?(
               {:ok, %{registries: [_ | _]}},
               ClusterScope.run("horde_registry_inspect", %{})
             )
           end)
  end
end
