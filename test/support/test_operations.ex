defmodule ClusterScope.TestOps do
  @moduledoc false
  # Operations defined only for tests: every parameter type, failures of each
  # class, two versions of one route, a missing requirement, a mutating one.

  defmodule AllTypes do
    @moduledoc false
    use ClusterScope.Operation, name: "test_all_types"

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/types/:target",
        summary: "Echoes every parameter type",
        parameters: [
          %{name: :target, type: :node, required: true, location: :path},
          %{name: :s, type: :string, min_length: 2, max_length: 5, location: :query},
          %{name: :i, type: :integer, min: 1, max: 10, default: 3, location: :query},
          %{name: :f, type: :float, min: 0.0, max: 1.0, location: :query},
          %{name: :b, type: :boolean, location: :query},
          %{name: :a, type: :array, items: :integer, max_length: 3, location: :query},
          %{name: :m, type: :map, location: :query},
          %{name: :e, type: :enum, values: [:asc, :desc], location: :query},
          %{name: :p, type: :pid, location: :query}
        ],
        responses: %{200 => %{description: "the params"}}
      }
    end

    @impl true
    def execute(params), do: {:ok, Map.delete(params, :__context__)}

    @impl true
    def format_response(params) do
      Map.new(params, fn
        {k, %ClusterScope.ProcessRef{} = p} -> {k, to_string(p)}
        kv -> kv
      end)
    end
  end

  defmodule Fail do
    @moduledoc false
    use ClusterScope.Operation, name: "test_fail", timeout: 300

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/fail/:how",
        summary: "Fails in the way it is asked to",
        parameters: [
          %{
            name: :how,
            type: :enum,
            values: ~w(raise exit throw error not_found sleep bad_return partition)a,
            required: true,
            location: :path
          }
        ],
        responses: %{}
      }
    end

    @impl true
    def execute(%{how: :raise}), do: raise(ArgumentError, "boom")
    def execute(%{how: :exit}), do: exit(:bye)
    def execute(%{how: :throw}), do: throw(:ball)
    def execute(%{how: :error}), do: {:error, {:strange, self()}}
    def execute(%{how: :not_found}), do: {:error, {:not_found, "no such thing"}}
    def execute(%{how: :partition}), do: {:error, :partition}
    def execute(%{how: :bad_return}), do: :what
    def execute(%{how: :sleep}), do: Process.sleep(:infinity)
  end

  defmodule EchoV1 do
    @moduledoc false
    use ClusterScope.Operation, name: "test_echo", version: 1

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/echo",
        summary: "Echo, first version",
        parameters: [%{name: :text, type: :string, required: true, location: :query}],
        responses: %{200 => %{description: "echo"}}
      }
    end

    @impl true
    def execute(%{text: text}), do: {:ok, %{echo: text, version: 1}}
  end

  defmodule EchoV2 do
    @moduledoc false
    use ClusterScope.Operation, name: "test_echo", version: 2

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/echo",
        summary: "Echo, second version (upper case)",
        parameters: [%{name: :text, type: :string, required: true, location: :query}],
        responses: %{200 => %{description: "echo"}}
      }
    end

    @impl true
    def execute(%{text: text}), do: {:ok, %{echo: String.upcase(text), version: 2}}
  end

  defmodule NeedsHorde do
    @moduledoc false
    use ClusterScope.Operation, name: "test_needs_horde", requires: [:horde]

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/horde",
        summary: "Needs Horde",
        parameters: [],
        responses: %{}
      }
    end

    @impl true
    def execute(_), do: {:ok, %{}}
  end

  defmodule Mutate do
    @moduledoc false
    use ClusterScope.Operation, name: "test_mutate"

    @impl true
    def rest_config do
      %{
        method: :post,
        path: "/api/v1/test/mutate",
        summary: "A mutating operation",
        parameters: [
          %{name: :value, type: :integer, required: true, location: :body},
          %{name: :tags, type: :array, items: :string, location: :body}
        ],
        responses: %{200 => %{description: "done"}}
      }
    end

    @impl true
    def execute(params), do: {:ok, params |> Map.delete(:__context__) |> Map.put(:mutated, true)}
  end

  @doc "Registers the test operations; unregisters them on exit."
  def register(modules \\ [AllTypes, Fail, EchoV1, EchoV2, NeedsHorde, Mutate]) do
    for m <- modules, do: {:ok, _} = ClusterScope.register_operation(m)
    ExUnit.Callbacks.on_exit(fn -> Enum.each(modules, &ClusterScope.unregister_operation/1) end)
    :ok
  end
end

defmodule ClusterScope.Test.ProcHolder do
  @moduledoc false
  # Processes of known size, type and queue for the process-view tests.

  @doc "Spawns `count` holders, the i-th keeping a list of `base * i` words."
  def spawn_many(count, base) do
    for i <- 1..count, do: spawn(__MODULE__, :hold, [List.duplicate(i, base * i)])
  end

  @doc "Spawns `count` holders of 0..399 words (varied sizes, for benchmarks)."
  def spawn_varied(count) do
    for i <- 1..count, do: spawn(__MODULE__, :hold, [List.duplicate(i, rem(i * 7919, 400))])
  end

  @doc "A holder that never reads its mailbox (for queue tests)."
  def spawn_deaf(queued) do
    pid = spawn(__MODULE__, :deaf, [])
    for i <- 1..queued, do: send(pid, {:msg, i})
    pid
  end

  def hold(data) do
    receive do
      :stop -> length(data)
      {:report, to} -> send(to, {:held, length(data)}) && hold(data)
    end
  end

  def deaf do
    receive do
      :stop -> :ok
    after
      :infinity -> :ok
    end
  end
end

defmodule TestApp.Echo do
  @moduledoc false
  use GenServer

  def start(name \\ nil) do
    opts = if name, do: [name: name], else: []
    GenServer.start(__MODULE__, %{seen: []}, opts)
  end

  @impl true
  def init(state), do: {:ok, state}

  @impl true
  def handle_call({:echo, x}, _from, state), do: {:reply, {:echoed, x}, state}
  def handle_call(:seen, _from, state), do: {:reply, Enum.reverse(state.seen), state}

  @impl true
  def handle_cast(msg, state), do: {:noreply, %{state | seen: [{:cast, msg} | state.seen]}}

  @impl true
  def handle_info(msg, state), do: {:noreply, %{state | seen: [{:info, msg} | state.seen]}}
end

defmodule TestApp.Work do
  @moduledoc false
  # A function to trace, and drivers that call it from the node they run on.

  def step(x), do: x + 1

  @doc "Calls step/1 n times."
  def drive(n), do: drive(n, 0)
  defp drive(0, acc), do: acc
  defp drive(n, acc), do: drive(n - 1, __MODULE__.step(acc))

  @doc "Calls step/1 n times in each of `procs` processes at once; waits for them."
  def drive_parallel(procs, n) do
    1..procs
    |> Enum.map(fn _ -> Task.async(fn -> drive(n) end) end)
    |> Enum.map(&Task.await(&1, 30_000))
  end

  @doc "Calls step/1 for `ms` milliseconds; returns how many calls were made."
  def drive_for(ms) do
    deadline = System.monotonic_time(:millisecond) + ms
    loop(deadline, 0)
  end

  defp loop(deadline, n) do
    n = __MODULE__.drive(1_000) + n

    if System.monotonic_time(:millisecond) < deadline, do: loop(deadline, n), else: n
  end
end

defmodule TestApp.TraceCollector do
  @moduledoc false
  # A subscriber to a trace session that keeps what it receives.

  def start(id) do
    parent = self()

    pid =
      spawn(fn ->
        send(parent, {:subscribed, self(), ClusterScope.Trace.subscribe(id)})
        loop([])
      end)

    receive do
      {:subscribed, ^pid, :ok} -> {:ok, pid}
      {:subscribed, ^pid, error} -> error
    end
  end

  def events(pid) do
    send(pid, {:get, self()})

    receive do
      {:events, events} -> events
    after
      2_000 -> :timeout
    end
  end

  defp loop(acc) do
    receive do
      {:cluster_scope, :trace, _id, event} -> loop([event | acc])
      {:get, from} -> send(from, {:events, Enum.reverse(acc)}) && loop(acc)
    end
  end
end

defmodule TestApp.Secretive do
  @moduledoc false
  # A function that receives secrets as arguments, for redaction tests.

  def login(user, password), do: {:ok, user, byte_size(password)}

  @doc "Calls login/2 with `password` n times."
  def drive(password, n), do: for(_ <- 1..n, do: __MODULE__.login("bob", password))
end
