defmodule ClusterScope.Web.ConfiguredEndpoint do
  @moduledoc """
  Keeps the endpoint of `config :cluster_scope, http: [enabled: true, ...]`
  running: starts it under `ClusterScope.Web.EndpointSupervisor` and starts
  it again when it goes away (its process or the supervisor crashed), after
  a short pause that doubles up to 30 s while starting fails (a port held
  by someone else is logged once, not every time).

  Cost: one monitor; nothing runs while the endpoint is up.
  """

  use GenServer

  require Logger

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The configured endpoint's pid, address and URL, or nil."
  @spec current() :: ClusterScope.Web.Endpoint.t() | nil
  def current, do: GenServer.call(__MODULE__, :current)

  @impl true
  def init(_opts) do
    http = ClusterScope.Config.get(:http)
    state = %{http: http, endpoint: nil, ref: nil, backoff: 100, logged: false}
    # Started before init returns: when the application has started, the
    # configured endpoint listens (or its failure is logged and retried).
    if http[:enabled], do: {:ok, start(state)}, else: {:ok, state}
  end

  @impl true
  def handle_call(:current, _from, state), do: {:reply, state.endpoint, state}

  @impl true
  def handle_info({:DOWN, ref, :process, _, _}, %{ref: ref} = state) do
    Process.send_after(self(), :start, 100)
    {:noreply, %{state | endpoint: nil, ref: nil}}
  end

  def handle_info(:start, %{endpoint: nil} = state), do: {:noreply, start(state)}
  def handle_info(_msg, state), do: {:noreply, state}

  defp start(state) do
    case ClusterScope.Web.Endpoint.start(state.http) do
      {:ok, endpoint} ->
        Logger.info("ClusterScope HTTP API on #{endpoint.url}")

        %{
          state
          | endpoint: endpoint,
            ref: Process.monitor(endpoint.pid),
            backoff: 100,
            logged: false
        }

      {:error, reason} ->
        unless state.logged do
          Logger.error(
            "ClusterScope could not start its HTTP endpoint on port #{state.http[:port]}: " <>
              "#{inspect(reason)}. The rest of ClusterScope runs without it; retrying."
          )
        end

        Process.send_after(self(), :start, state.backoff)
        %{state | backoff: min(state.backoff * 2, 30_000), logged: true}
    end
  catch
    # The endpoint supervisor is restarting: try again shortly.
    :exit, _ ->
      Process.send_after(self(), :start, state.backoff)
      %{state | backoff: min(state.backoff * 2, 30_000)}
  end
end
