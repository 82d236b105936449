defmodule ClusterScope.Test.NodeViewsHolder do
  @moduledoc false
  # Long-lived owners of ETS tables and sockets on a peer, for the node
  # views' cluster tests (a process started by a peer call exits with it).

  @doc "A process owning a new table with `count` objects; returns `{pid, id_text}`."
  def table(name, opts, count, value \\ "v") do
    parent = self()
    ref = make_ref()

    pid =
      spawn(fn ->
        t = :ets.new(name, opts)
        :ets.insert(t, for(i <- 1..count//1, do: {i, value}))
        send(parent, {ref, ClusterScope.NodeViews.Ets.Local.id_text(t)})
        hold(t)
      end)

    receive do
      {^ref, id} -> {pid, id}
    after
      5_000 -> {:error, :timeout}
    end
  end

  @doc "A process owning `n` tables of `objects` objects each (benchmarks); returns its pid."
  def tables(n, objects) do
    parent = self()
    ref = make_ref()

    pid =
      spawn(fn ->
        for i <- 1..n do
          t = :ets.new(:nv_bench, [:public])
          :ets.insert(t, for(j <- 1..(objects + rem(i, 7))//1, do: {j, i}))
        end

        send(parent, {ref, :ok})
        hold(nil)
      end)

    receive do
      {^ref, :ok} -> pid
    after
      60_000 -> {:error, :timeout}
    end
  end

  @doc "Makes the owner `pid` insert objects into its table."
  def insert(pid, objects) do
    send(pid, {:insert, self(), objects})

    receive do
      {:inserted, ^pid} -> true
    after
      5_000 -> false
    end
  end

  @doc """
  A process holding a connected gen_tcp pair on `ip` that sent `bytes` one
  way, and a `socket` module socket bound on `ip`; returns their ids and
  addresses.
  """
  def sockets(ip, bytes) do
    parent = self()
    ref = make_ref()

    spawn(fn ->
      {:ok, l} = :gen_tcp.listen(0, ip: ip, active: false)
      {:ok, lport} = :inet.port(l)
      {:ok, c} = :gen_tcp.connect(ip, lport, active: false, ip: ip)
      {:ok, a} = :gen_tcp.accept(l, 2_000)
      :ok = :gen_tcp.send(c, :binary.copy("x", bytes))
      {:ok, _} = :gen_tcp.recv(a, bytes, 2_000)
      {:ok, s} = :socket.open(:inet, :stream, :tcp)
      :ok = :socket.bind(s, %{family: :inet, addr: ip, port: 0})
      {:ok, %{port: sport}} = :socket.sockname(s)
      {:ok, {_, cport}} = :inet.sockname(c)

      send(
        parent,
        {ref,
         %{
           sender: ClusterScope.NodeViews.Ports.Local.id_text(c),
           sender_port: cport,
           listen_port: lport,
           socket_port: sport
         }}
      )

      hold(nil)
    end)

    receive do
      {^ref, info} -> info
    after
      5_000 -> {:error, :timeout}
    end
  end

  defp hold(t) do
    receive do
      :stop ->
        :ok

      {:insert, from, objects} ->
        :ets.insert(t, objects)
        send(from, {:inserted, self()})
        hold(t)
    end
  end
end
