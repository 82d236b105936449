defmodule ClusterScope.ProcsLocalTest do
  # Not async: the system monitor and the process counts see the whole node.
  use ExUnit.Case

  alias ClusterScope.Procs
  alias ClusterScope.Test.ProcHolder

  @holders "Elixir.ClusterScope.Test.ProcHolder:*"

  setup do
    holders = ProcHolder.spawn_many(120, 50)
    on_exit(fn -> Enum.each(holders, &Process.exit(&1, :kill)) end)
    %{holders: holders}
  end

  test "pages through every matching process exactly once, largest first", %{holders: holders} do
    pages = page_all(%{name: @holders, sort_by: :memory, limit: 25, max_age_ms: 0}, [])
    rows = List.flatten(pages)

    assert length(pages) == 5
    assert Enum.map(rows, & &1.pid) |> Enum.uniq() |> length() == 120
    assert MapSet.new(rows, & &1.pid) == MapSet.new(holders, &ClusterScope.ProcessRef.to_string/1)
    memories = Enum.map(rows, & &1.memory)
    assert memories == Enum.sort(memories, :desc)
    assert Enum.all?(rows, &(&1.node == Atom.to_string(node()) and &1.type == "plain"))
  end

  test "filters by minimum memory and queue, and by type" do
    deaf = ProcHolder.spawn_deaf(40)
    on_exit(fn -> Process.exit(deaf, :kill) end)

    {:ok, list} = Procs.list(min_queue: 30, sort_by: :message_queue_len, max_age_ms: 0)
    assert [%{pid: pid, message_queue_len: 40}] = list.processes
    assert pid == ClusterScope.ProcessRef.to_string(deaf)

    {:ok, sups} = Procs.list(type: :supervisor, limit: 1000, max_age_ms: 0)
    assert sups.processes != []
    assert Enum.all?(sups.processes, &(&1.type == "supervisor"))
    assert Enum.any?(sups.processes, &(&1.registered_name == "kernel_sup"))

    {:ok, big} = Procs.list(name: @holders, min_memory: 20_000, limit: 1000, max_age_ms: 0)
    assert big.processes != []
    assert Enum.all?(big.processes, &(&1.memory >= 20_000))
  end

  test "the summary counts what the list shows", %{holders: holders} do
    {:ok, %{summary: s}} = Procs.summary(name: @holders, k: 5, max_age_ms: 0)
    assert s.matched == length(holders)
    assert s.process_count >= length(holders)
    assert [%{key: "plain", count: 120}] = s.groups.type.entries
    assert length(s.top.memory) == 5
    assert Enum.sum(s.histograms.memory) == 120
    [first | _] = s.top.memory
    {:ok, %{processes: [top]}} = Procs.list(name: @holders, limit: 1, max_age_ms: 0)
    assert first.pid == top.pid
  end

  test "window mode ranks by reductions over the interval" do
    busy =
      spawn(fn ->
        Stream.repeatedly(fn -> :erlang.phash2(:rand.uniform()) end) |> Stream.run()
      end)

    on_exit(fn -> Process.exit(busy, :kill) end)
    {:ok, list} = Procs.list(window_ms: 300, sort_by: :reductions, limit: 3)
    assert [%{pid: pid} = row | _] = list.processes
    assert pid == ClusterScope.ProcessRef.to_string(busy)
    assert row.reductions_per_sec > 100_000
    assert list.window.interval_ms >= 250
  end

  test "a bad cursor is an invalid_params error naming the field" do
    assert {:error, %ClusterScope.Error{code: :invalid_params} = e} =
             ClusterScope.run("process_list", %{"cursor" => "bm9wZQ"})

    assert inspect(e.details) =~ "cursor"

    good = Procs.encode_cursor(:memory, 10, ClusterScope.ProcessRef.to_string(self()))

    assert {:error, %ClusterScope.Error{code: :invalid_params}} =
             ClusterScope.run("process_list", %{"cursor" => good, "sort_by" => "reductions"})
  end

  test "no NIF call runs longer than 1 ms on a normal scheduler" do
    many = ProcHolder.spawn_many(20_000, 1)
    on_exit(fn -> Enum.each(many, &Process.exit(&1, :kill)) end)
    # The slot is the node's only one (the health monitor may hold it): give
    # it back as it was.
    previous = :erlang.system_monitor(self(), [{:long_schedule, 1}])

    try do
      {:ok, _} = Procs.summary(max_age_ms: 0)
      {:ok, _} = Procs.list(limit: 100, max_age_ms: 0)
      {:ok, _} = Procs.list(window_ms: 100, limit: 10)
    after
      case previous do
        {pid, opts} -> :erlang.system_monitor(pid, opts)
        :undefined -> :erlang.system_monitor(:undefined)
      end
    end

    # A dirty NIF runs on a dirty scheduler: its long schedules are allowed.
    dirty = dirty_nifs()
    assert :procs_summary in dirty

    native =
      collect_long_schedules([])
      |> Enum.filter(fn info ->
        Enum.any?([info[:in], info[:out]], fn
          {ClusterScope.Native, name, _} -> name not in dirty
          _ -> false
        end)
      end)

    assert native == [], "normal-scheduler NIF calls over 1 ms: #{inspect(native)}"
  end

  # The NIFs the Rust sources mark dirty (`schedule = "Dirty..."`).
  defp dirty_nifs do
    Path.wildcard("native/cluster_scope_nif/src/*.rs")
    |> Enum.flat_map(fn file ->
      Regex.scan(~r/schedule = "Dirty\w+"\)\]\s*(?:pub\s+)?fn\s+(\w+)/, File.read!(file),
        capture: :all_but_first
      )
    end)
    |> Enum.map(fn [name] -> String.to_atom(name) end)
  end

  defp collect_long_schedules(acc) do
    receive do
      {:monitor, _pid, :long_schedule, info} -> collect_long_schedules([info | acc])
    after
      0 -> acc
    end
  end

  defp page_all(opts, acc) do
    {:ok, page} = Procs.list(opts)
    acc = [page.processes | acc]

    case page.next_cursor do
      nil ->
        Enum.reverse(acc)

      cursor ->
        {:ok, decoded} = Procs.decode_cursor(cursor, opts.sort_by)
        page_all(Map.put(opts, :cursor, decoded), acc)
    end
  end
end
