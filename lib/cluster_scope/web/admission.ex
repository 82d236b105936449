defmodule ClusterScope.Web.Admission do
  @moduledoc """
  Admission control of the HTTP endpoints: one client can never starve the
  others, and health always answers.

  Every request that runs an operation asks for a place in a *lane* before
  it runs and gives it back when it is done (or when its process dies: the
  place is held by a monitor, so a crashed or killed handler never leaks
  one):

    * `:health` - the health check (`cluster_health`): its own places,
      never taken by other work, at most #{4} per client, no rate limit
      (a probe asks one at a time);
    * `:control` - operations of the control scope (they need the admin
      token): their own places, so an operator can still act on a node that
      readers are flooding;
    * `:slow` - requests that hold their place for a long time (a process
      window, `window_ms` > 0): few places, at most 2 per client;
    * `:stream` - live event streams (`GET /api/v1/stream`): held for the
      whole stream, at most `stream_per_client` per client, #{64} in all,
      one token of the client's rate to open;
    * `:general` - everything else.

  In the `:general` and `:slow` lanes each client (its peer address) also
  has a concurrency limit (`client_concurrency`) and a token bucket
  (`client_rate` per second, `client_burst`). A request over a limit is
  answered at once with a JSON 429 and `Retry-After` (never queued: a
  queue would hold the connection and the memory of a request that the
  client will retry anyway).

  ## Cost

  One call to this process per request (a map lookup and an update) and a
  cast when it ends: microseconds, far below what any operation costs. The
  state is bounded: at most #{10_000} clients are tracked (more share one
  entry), and idle clients with full buckets are forgotten every minute.
  If this process is not running (it restarts with ClusterScope's
  supervisor), requests are admitted without accounting rather than refused:
  an admission failure must not turn into an outage.
  """

  use GenServer

  @lanes %{health: 16, control: 8, slow: 4, general: 32, stream: 64}
  @slow_per_client 2
  @health_per_client 4
  @max_clients 10_000
  @sweep_ms 60_000

  @typedoc "A lane of requests."
  @type lane :: :health | :control | :slow | :general | :stream

  @typedoc "The limits of one endpoint (from its settings)."
  @type limits :: %{
          required(:client_concurrency) => pos_integer(),
          required(:client_rate) => pos_integer(),
          required(:client_burst) => pos_integer(),
          optional(:stream_per_client) => pos_integer()
        }

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The number of places of each lane."
  @spec lanes() :: %{lane() => pos_integer()}
  def lanes, do: @lanes

  @doc """
  Asks for a place in `lane` for `client` (a key, the peer address) on
  `endpoint` (its id), for the calling process. Returns `:ok` (the place is
  the caller's until `leave/0` or its exit) or `{:reject, why, retry_after_s}`.
  """
  @spec enter(String.t(), lane(), term(), limits()) ::
          :ok | {:reject, String.t(), pos_integer()}
  def enter(endpoint, lane, client, limits) when is_map_key(@lanes, lane) do
    GenServer.call(__MODULE__, {:enter, self(), {endpoint, lane}, client, limits}, 2_000)
  catch
    :exit, _ -> :ok
  end

  @doc "Gives back the caller's place."
  @spec leave() :: :ok
  def leave, do: GenServer.cast(__MODULE__, {:leave, self()})

  @doc false
  # For tests: the places taken per lane and the number of tracked clients.
  def usage, do: GenServer.call(__MODULE__, :usage)

  @impl true
  def init(_opts) do
    Process.send_after(self(), :sweep, @sweep_ms)
    # lanes: {endpoint, lane} => taken; clients: {endpoint, lane, client} =>
    # taken; buckets: {endpoint, client} => {tokens, at_ms}; held: pid =>
    # {monitor, key}.
    {:ok, %{lanes: %{}, clients: %{}, buckets: %{}, held: %{}}}
  end

  @impl true
  def handle_call({:enter, pid, {endpoint, lane} = key, client, limits}, _from, state) do
    client = bounded_client(state, endpoint, client)

    with :ok <- lane_free(state, key),
         :ok <- client_free(state, key, client, limits),
         {:ok, state} <- take_token(state, endpoint, lane, client, limits) do
      {:reply, :ok, hold(state, pid, key, client)}
    else
      {:reject, why, retry} -> {:reply, {:reject, why, retry}, state}
    end
  end

  def handle_call(:usage, _from, state) do
    {:reply, %{lanes: state.lanes, clients: map_size(state.buckets)}, state}
  end

  @impl true
  def handle_cast({:leave, pid}, state), do: {:noreply, release(state, pid)}

  @impl true
  def handle_info({:DOWN, _ref, :process, pid, _}, state),
    do: {:noreply, release(state, pid, :all)}

  def handle_info(:sweep, state) do
    Process.send_after(self(), :sweep, @sweep_ms)
    now = now_ms()
    # A bucket left alone for a minute has refilled: forget it.
    buckets = Map.reject(state.buckets, fn {_, {_tokens, at}} -> now - at > @sweep_ms end)
    {:noreply, %{state | buckets: buckets}}
  end

  defp lane_free(state, {_endpoint, lane} = key) do
    if Map.get(state.lanes, key, 0) < Map.fetch!(@lanes, lane),
      do: :ok,
      else: {:reject, "the #{lane} lane of this endpoint is full", 1}
  end

  # Control needs the admin token: its lane has no per-client limit.
  defp client_free(_state, {_endpoint, :control}, _client, _limits), do: :ok

  defp client_free(state, {endpoint, lane}, client, limits) do
    max =
      case lane do
        :general -> limits.client_concurrency
        # Health is open to anyone: one client may not fill its lane.
        :health -> @health_per_client
        :slow -> min(@slow_per_client, limits.client_concurrency)
        :stream -> Map.get(limits, :stream_per_client, 4)
      end

    if Map.get(state.clients, {endpoint, lane, client}, 0) < max,
      do: :ok,
      else: {:reject, "this client already has #{max} #{lane} requests running", 1}
  end

  # A stream's opening took its token in the general lane.
  defp take_token(state, _endpoint, lane, _client, _limits)
       when lane in [:health, :control, :stream],
       do: {:ok, state}

  defp take_token(state, endpoint, _lane, client, limits) do
    now = now_ms()
    key = {endpoint, client}
    burst = limits.client_burst * 1.0
    {tokens, at} = Map.get(state.buckets, key, {burst, now})
    tokens = min(burst, tokens + (now - at) * limits.client_rate / 1_000)

    if tokens >= 1.0 do
      {:ok, %{state | buckets: Map.put(state.buckets, key, {tokens - 1.0, now})}}
    else
      retry = max(1, ceil((1.0 - tokens) / limits.client_rate))
      {:reject, "this client is over #{limits.client_rate} requests per second", retry}
    end
  end

  # A process may hold several places (one per request it is serving, on
  # a keep-alive connection they come one after the other): a stack each.
  defp hold(state, pid, {endpoint, lane} = key, client) do
    monitor = Process.monitor(pid)

    %{
      state
      | lanes: Map.update(state.lanes, key, 1, &(&1 + 1)),
        clients: Map.update(state.clients, {endpoint, lane, client}, 1, &(&1 + 1)),
        held:
          Map.update(state.held, pid, [{monitor, key, client}], &[{monitor, key, client} | &1])
    }
  end

  # leave/0 gives back the last place taken; a DOWN all of them.
  defp release(state, pid, how \\ :one) do
    case Map.get(state.held, pid, []) do
      [] ->
        state

      [place | rest] when how == :one ->
        state = give_back(state, place)

        if rest == [],
          do: %{state | held: Map.delete(state.held, pid)},
          else: %{state | held: Map.put(state.held, pid, rest)}

      places ->
        places
        |> Enum.reduce(state, &give_back(&2, &1))
        |> Map.update!(:held, &Map.delete(&1, pid))
    end
  end

  defp give_back(state, {monitor, {endpoint, lane} = key, client}) do
    Process.demonitor(monitor, [:flush])

    %{
      state
      | lanes: decrement(state.lanes, key),
        clients: decrement(state.clients, {endpoint, lane, client})
    }
  end

  defp decrement(map, key) do
    case Map.get(map, key, 0) do
      n when n <= 1 -> Map.delete(map, key)
      n -> Map.put(map, key, n - 1)
    end
  end

  # Past @max_clients tracked buckets, new clients share one entry, so an
  # attacker rotating addresses cannot grow the state.
  defp bounded_client(state, endpoint, client) do
    if map_size(state.buckets) < @max_clients or Map.has_key?(state.buckets, {endpoint, client}),
      do: client,
      else: :overflow
  end

  defp now_ms, do: System.monotonic_time(:millisecond)
end
