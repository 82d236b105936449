defmodule ClusterScope.Operations.GetProcessInfo do
  @moduledoc """
  `GET /api/v1/processes/:pid`: everything about one process on any node:
  memory, reductions, queue, heap, status, current and initial call,
  application and type; links, monitors and ancestors, each with its node;
  and for an OTP behaviour its state through `:sys.get_state/2`.

  Reading the state sends the process a system message and waits for the
  answer, at most `state_timeout_ms` (0 skips it): a busy process answers
  late or not at all, and the rest of the info is still returned with
  `state_error`. A state larger than 1 MiB is printed on its node,
  depth-limited, rather than copied.
  """

  use ClusterScope.Operation, name: "get_process_info", scope: :sensitive, timeout: 25_000

  alias ClusterScope.Procs.Control

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/processes/:pid",
      summary: "Full info of a process on any node, with its state",
      parameters: [
        ClusterScope.Procs.Params.pid(),
        %{
          name: :state_timeout_ms,
          type: :integer,
          min: 0,
          max: 10_000,
          default: 1_000,
          location: :query,
          description: "how long to wait for the state (0: do not read it)"
        }
      ],
      responses: %{200 => %{description: "the process info"}}
    }
  end

  @impl true
  def execute(%{pid: ref, state_timeout_ms: timeout}) do
    # A virtual process of the simulated mode: its generated info.
    if ClusterScope.Simulator.virtual?(ref.node),
      do: ClusterScope.Simulator.Data.process_info(ref),
      else: Control.info(ref, timeout)
  end
end
