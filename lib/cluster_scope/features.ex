defmodule ClusterScope.Features do
  @moduledoc """
  Feature flags per area, from `config :cluster_scope, features: [...]`:

    * `heartbeats` - the heartbeats between agents and their phi-accrual
      detectors (read at start). Off, no heartbeat traffic at all: the
      cluster's picture comes from Erlang's own connections (a nodedown
      still shows at once; a frozen node or a partition only when Erlang's
      tick notices, 45-75 s with the default `net_ticktime`)
    * `tracing` - trace sessions (`trace_process`, `stop_trace_session`,
      `list_trace_sessions`, `get_trace_events`)
    * `sandboxes` - sandboxes (`create_sandbox`, `destroy_sandbox`,
      `migrate_sandbox`, `list_sandboxes`, `get_sandbox_info`)
    * `process_control` - acting on processes (`kill_process`,
      `send_message`, `horde_process_start`)

  Every flag is on unless set to `false`. A disabled area's operations stay
  listed, as unavailable with the reason, and answer 503 on every surface
  (HTTP, CLI, Arsenal, `ClusterScope.run/3`): a production node can keep
  ClusterScope's views and switch off everything that acts. The other
  switches are options of their own: the HTTP endpoint (`http: [enabled:
  ...]`) and mode switching (`allow_mode_switch`).

  Cost: one persistent-term read per operation call.
  """

  @areas %{
    heartbeats: [],
    tracing: ~w(trace_process stop_trace_session list_trace_sessions get_trace_events),
    sandboxes: ~w(create_sandbox destroy_sandbox migrate_sandbox list_sandboxes get_sandbox_info),
    process_control: ~w(kill_process send_message horde_process_start)
  }

  @by_operation for {area, names} <- @areas, name <- names, into: %{}, do: {name, area}

  @doc "The areas that can be switched off, each with its operations."
  @spec areas() :: %{atom() => [String.t()]}
  def areas, do: @areas

  @doc "Whether an area is on here."
  @spec enabled?(atom()) :: boolean()
  def enabled?(area) when is_map_key(@areas, area) do
    Keyword.get(ClusterScope.Config.get(:features), area, true) != false
  end

  @doc """
  `:ok` when the operation's area (if it has one) is on, else
  `{:error, reason}` naming the option that switched it off.
  """
  @spec check(String.t()) :: :ok | {:error, String.t()}
  def check(operation_name) do
    case Map.fetch(@by_operation, operation_name) do
      {:ok, area} ->
        if enabled?(area),
          do: :ok,
          else:
            {:error,
             "#{area} is switched off here (config :cluster_scope, features: [#{area}: false])"}

      :error ->
        :ok
    end
  end
end
