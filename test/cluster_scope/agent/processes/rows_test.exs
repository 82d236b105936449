defmodule ClusterScope.Agent.Processes.RowsTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Agent.Processes.Rows
  alias TestApp.Echo

  test "Rows calls nothing but OTP and Redact (itself OTP-only), so both load onto a node without ClusterScope" do
    otp_root = List.to_string(:code.root_dir())

    for {module, allowed} <- [{Rows, [ClusterScope.Redact]}, {ClusterScope.Redact, []}] do
      {^module, binary, _} = :code.get_object_code(module)
      {:ok, {^module, [imports: imports]}} = :beam_lib.chunks(binary, [:imports])
      modules = imports |> Enum.map(&elem(&1, 0)) |> Enum.uniq()

      for mod <- modules -- allowed do
        path = :code.which(mod)

        assert (is_list(path) and List.to_string(path) =~ otp_root) or path == :preloaded,
               "#{inspect(module)} calls #{inspect(mod)}, which is not part of OTP (#{inspect(path)})"
      end
    end
  end

  test "a queue length the core would refuse becomes 0, never a refused batch" do
    assert ClusterScope.Agent.Processes.Rows.count(12) == 12
    assert ClusterScope.Agent.Processes.Rows.count(0) == 0
    assert ClusterScope.Agent.Processes.Rows.count(-3) == 0
    assert ClusterScope.Agent.Processes.Rows.count(:undefined) == 0

    # A row built with it is taken by the core.
    {:ok, snap} = ClusterScope.Native.procs_snapshot_new() |> then(&{:ok, &1})

    row =
      {self(), 1, 1, ClusterScope.Agent.Processes.Rows.count(-3), 0, 0, 0, :undefined, :undefined,
       [], :undefined, :undefined, :plain}

    assert :ok = ClusterScope.Native.procs_snapshot_push(snap, [row])

    assert {:error, {:invalid_row, _}} =
             ClusterScope.Native.procs_snapshot_push(snap, [put_elem(row, 3, -3)])
  end

  test "rows read the real initial call, the application and the type" do
    {:ok, echo} = Echo.start()
    {:ok, sup} = Supervisor.start_link([], strategy: :one_for_one)
    task = Task.async(fn -> receive(do: (:go -> :ok)) end)
    plain = spawn(fn -> receive(do: (:go -> :ok)) end)

    {rows, _ctx} = Rows.rows([echo, sup, task.pid, plain], :pid, Rows.context())
    by_pid = Map.new(rows, &{elem(&1, 0), &1})

    assert elem(by_pid[echo], 10) == {Echo, :init, 1}
    assert elem(by_pid[echo], 12) == :gen_server
    assert elem(by_pid[sup], 12) == :supervisor
    assert elem(by_pid[task.pid], 12) == :task
    assert elem(by_pid[plain], 12) == :plain
    assert elem(by_pid[plain], 10) == {:erlang, :apply, 2}

    {[logger_row], _} = Rows.rows([Process.whereis(:kernel_sup)], :pid, Rows.context())
    assert elem(logger_row, 11) == :kernel
    assert elem(logger_row, 9) == :kernel_sup
    assert elem(logger_row, 12) == :supervisor

    send(task.pid, :go)
    Task.await(task)
    send(plain, :go)
    GenServer.stop(echo)
  end

  test "the agentless stream is not in its own rows" do
    me = self()
    ref = make_ref()
    streamer = spawn(fn -> Rows.stream_v1(me, ref, 5_000) end)
    rows = receive_rows(streamer, ref, [])
    keys = MapSet.new(rows, &elem(&1, 0))
    refute MapSet.member?(keys, Rows.pid_key(streamer))
    assert MapSet.member?(keys, Rows.pid_key(me))
  end

  defp receive_rows(streamer, ref, acc) do
    receive do
      {^ref, :rows, rows} ->
        send(streamer, {ref, :ack})
        receive_rows(streamer, ref, acc ++ rows)

      {^ref, :done, _count} ->
        acc
    after
      5_000 -> flunk("no rows from the stream")
    end
  end

  test "a dead process is skipped and integer keys carry the pid's two numbers" do
    dead = spawn(fn -> :ok end)
    ref = Process.monitor(dead)
    assert_receive {:DOWN, ^ref, _, _, _}
    me = self()
    {rows, _} = Rows.rows([dead, me], :integer, Rows.context())
    assert [row] = rows

    [_, id, serial] =
      me
      |> :erlang.pid_to_list()
      |> to_string()
      |> String.trim("<")
      |> String.trim(">")
      |> String.split(".")

    assert elem(row, 0) == String.to_integer(id) * 4_294_967_296 + String.to_integer(serial)
  end

  test "info_v1 reads a behaviour's state and says when there is none" do
    {:ok, echo} = Echo.start()
    info = Rows.info_v1(echo, 1_000)
    assert info.state == {:ok, %{seen: []}}
    assert Rows.info_v1(self(), 1_000).state == :not_a_behaviour
    GenServer.stop(echo)
    assert Rows.info_v1(echo, 1_000) == :undefined
  end
end
