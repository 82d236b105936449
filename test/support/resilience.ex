defmodule ClusterScope.Test.Load do
  @moduledoc false
  # A steady stream of operations against a node, from another node: the
  # load under which ClusterScope's processes are killed.

  def start(target) do
    spawn(fn -> loop(target) end)
  end

  def stop(pid) do
    Process.exit(pid, :kill)
    :ok
  end

  defp loop(target) do
    for op <- ["cluster_topology", "cluster_health", "process_list", "cluster_events"] do
      _ = ClusterScope.Fanout.call(target, ClusterScope, :run, [op, %{}], 5_000)
    end

    Process.sleep(20)
    loop(target)
  end
end

defmodule ClusterScope.Test.Inbox do
  @moduledoc false
  # A process that keeps what it receives (a subscriber that outlives the
  # servers killed around it).

  def start do
    spawn(fn -> loop([]) end)
  end

  def messages(pid) do
    ref = make_ref()
    send(pid, {:get, self(), ref})

    receive do
      {^ref, messages} -> messages
    after
      2_000 -> []
    end
  end

  defp loop(acc) do
    receive do
      {:get, from, ref} ->
        send(from, {ref, Enum.reverse(acc)})
        loop(acc)

      msg ->
        loop(Enum.take([msg | acc], 1_000))
    end
  end
end
