defmodule ClusterScope.Operations.SendMessage do
  @moduledoc """
  `POST /api/v1/processes/:pid/message`: delivers a message to a process on
  any node: a plain `send`, a `GenServer.cast`, or a `GenServer.call` that
  waits for the reply at most `timeout_ms`.

  `message` is JSON mapped to a term as `ClusterScope.Procs.Terms`
  documents (`{"$tuple": [{"$atom": "ping"}, 1]}` is `{:ping, 1}`; atoms
  must already exist). A call's reply comes back in the same mapping
  (`reply`) and as Elixir text (`reply_text`). The runtime's vital
  servers are always refused; its other processes and ClusterScope's own
  unless `force` where `allow_dangerous_actions` is true. Mutating: needs the token
  over HTTP and is absent in read-only mode.
  """

  # Majority: a message is an input to the application, like a kill.
  use ClusterScope.Operation,
    name: "send_message",
    timeout: 65_000,
    partition: :majority,
    idempotent: false

  alias ClusterScope.Procs.{Control, Terms}

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/processes/:pid/message",
      summary: "Send, cast or call a process on any node",
      parameters: [
        ClusterScope.Procs.Params.pid(),
        %{
          name: :message,
          type: :json,
          required: true,
          location: :body,
          description: "the message, as JSON ($atom, $tuple, $pid, $charlist forms)"
        },
        %{
          name: :mode,
          type: :enum,
          values: [:send, :cast, :call],
          default: :send,
          location: :body,
          description: "send, GenServer cast, or GenServer call"
        },
        %{
          name: :timeout_ms,
          type: :integer,
          min: 1,
          max: 60_000,
          default: 5_000,
          location: :body,
          description: "how long a call waits for the reply"
        },
        ClusterScope.Procs.Params.force()
      ],
      responses: %{200 => %{description: "delivered, and the reply of a call"}}
    }
  end

  def check_params(%{message: message} = params) do
    case Terms.from_json(message) do
      {:ok, term} -> {:ok, %{params | message: term}}
      {:error, text} -> {:error, [%{field: "message", message: text}]}
    end
  end

  @impl true
  def execute(%{pid: ref, message: message, mode: mode, timeout_ms: timeout, force: force}) do
    # A virtual process of the simulated mode runs no code: refused, saying why.
    if ClusterScope.Simulator.virtual?(ref.node),
      do: ClusterScope.Simulator.Data.refuse_message(ref),
      else: Control.send_message(ref, mode, message, timeout, force)
  end
end
