defmodule ClusterScope.Operations.KillProcess do
  @moduledoc """
  `POST /api/v1/processes/:pid/kill`: sends an exit signal to a process on
  any node and reports whether it exited (waiting up to a second).

  `reason` is `kill` (the default: untrappable), `shutdown`, `normal`
  (which a process that does not trap exits ignores), or any text, sent as
  `{:shutdown, text}`. The runtime's vital servers are always refused;
  the runtime's other processes and ClusterScope's own unless `force` where
  `allow_dangerous_actions` is true (see `ClusterScope.Procs.Control`). Mutating: needs the
  token over HTTP and is absent in read-only mode.
  """

  # Majority: a process killed by a minority may be restarted elsewhere
  # by the majority meanwhile (Horde), or be the majority's to decide.
  use ClusterScope.Operation,
    name: "kill_process",
    timeout: 20_000,
    partition: :majority,
    idempotent: false

  alias ClusterScope.Procs.Control

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/processes/:pid/kill",
      summary: "Kill a process on any node",
      parameters: [
        ClusterScope.Procs.Params.pid(),
        %{
          name: :reason,
          type: :string,
          default: "kill",
          min_length: 1,
          max_length: 200,
          location: :body,
          description: "kill, shutdown, normal, or a text sent as {:shutdown, text}"
        },
        ClusterScope.Procs.Params.force()
      ],
      responses: %{200 => %{description: "whether the process exited"}}
    }
  end

  @impl true
  def execute(%{pid: ref, reason: reason, force: force}) do
    # A virtual process of the simulated mode leaves its node's rows.
    if ClusterScope.Simulator.virtual?(ref.node),
      do: ClusterScope.Simulator.Data.kill(ref, reason),
      else: Control.kill(ref, reason, force)
  end
end
