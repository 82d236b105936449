defmodule ClusterScope.Test.LibclusterHost do
  @moduledoc """
  What a host does with libcluster, run on a peer by the `:libcluster`
  tests: start a `Cluster.Supervisor` that outlives the call, and capture
  the peer's log lines so a test can read them (the peer's logger, over
  `:peer`'s standard I/O, without distribution to the test node).
  """

  @doc """
  Starts a `Cluster.Supervisor` registered as `name` (nil: unnamed), owned
  by a process that lives on.
  """
  def start_supervisor(topologies, name) do
    parent = self()
    opts = if name, do: [name: name], else: []

    spawn(fn ->
      result = apply(Cluster.Supervisor, :start_link, [[topologies, opts]])
      send(parent, {:started, result})
      Process.sleep(:infinity)
    end)

    receive do
      {:started, result} -> result
    after
      10_000 -> {:error, :timeout}
    end
  end

  @doc "Starts keeping every log event of this node (see `lines/0`)."
  def capture_logs do
    {:ok, _} = Agent.start(fn -> [] end, name: __MODULE__)
    :ok = :logger.add_handler(:cluster_scope_test_capture, __MODULE__, %{level: :all})
  end

  @doc "The log lines captured so far, as `{level, text}`, oldest first."
  def lines, do: Agent.get(__MODULE__, &Enum.reverse/1)

  @doc false
  # :logger handler callback.
  def log(%{level: level, msg: msg}, _config) do
    text =
      case msg do
        {:string, s} -> IO.chardata_to_string(s)
        {:report, r} -> inspect(r)
        {format, args} -> format |> :io_lib.format(args) |> IO.chardata_to_string()
      end

    Agent.cast(__MODULE__, &[{level, text} | &1])
  catch
    _, _ -> :ok
  end
end
