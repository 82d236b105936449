defmodule ClusterScope.Error do
  @moduledoc """
  The one error envelope of every ClusterScope surface.

  Every failure of an operation, whatever its cause (bad input, a node that
  does not answer, a timeout, a raise inside the operation), becomes one of
  these, so the Elixir API, the HTTP API, the CLI and Arsenal hosts all see the
  same shape:

    * `code` - one of `t:code/0`, stable and machine-readable
    * `message` - one sentence for a person
    * `details` - structured facts (for `invalid_params`, `fields`: one
      `%{field, message}` per bad field)
    * `cluster` - the context it happened in: this node, the connected nodes,
      and the mode
    * `remediation` - concrete next steps
  """

  @codes ~w(invalid_params not_found node_unavailable timeout partition forbidden
            unauthorized unavailable native_unavailable method_not_allowed
            payload_too_large misdirected_request too_many_requests internal)a

  # The codes of the errors of the native core (`{code, detail}`, see
  # `ClusterScope.Native`): those that refuse the caller's input become
  # `invalid_params`, the others (a resource's state, a failure inside) become
  # `internal`. A test checks that these are exactly
  # `ClusterScope.Native.error_codes/0`.
  @native_input_codes ~w(invalid_argument invalid_option invalid_config invalid_value
                         invalid_limits too_large invalid_utf8 syntax non_finite_float
                         unsupported too_deep integer_out_of_range invalid_quantile
                         invalid_batch invalid_serialized empty invalid_observation
                         invalid_row invalid_summary invalid_window)a
  @native_other_codes ~w(too_many_peers too_many_rows busy serialize_failed)a

  @typedoc "The stable error codes."
  @type code ::
          :invalid_params
          | :not_found
          | :node_unavailable
          | :timeout
          | :partition
          | :forbidden
          | :unauthorized
          | :unavailable
          | :native_unavailable
          | :method_not_allowed
          | :payload_too_large
          | :misdirected_request
          | :too_many_requests
          | :internal

  @type t :: %__MODULE__{
          code: code(),
          message: String.t(),
          details: map(),
          cluster: map(),
          remediation: [String.t()]
        }

  defexception [:code, :message, details: %{}, cluster: %{}, remediation: []]

  @doc "Every error code."
  @spec codes() :: [code()]
  def codes, do: @codes

  @doc """
  Builds an error with the cluster context filled in and the default
  remediation of its code unless one is given.

  Options: `:details` (map), `:remediation` (list of strings).
  """
  @spec new(code(), String.t(), keyword()) :: t()
  def new(code, message, opts \\ []) when code in @codes and is_binary(message) do
    %__MODULE__{
      code: code,
      message: message,
      details: Keyword.get(opts, :details, %{}),
      cluster: cluster_context(),
      remediation: Keyword.get_lazy(opts, :remediation, fn -> default_remediation(code) end)
    }
  end

  @doc """
  The codes of native core errors this module classifies, as
  `{input_codes, other_codes}`: `normalize/1` makes `invalid_params` of the
  first and `internal` of the second.
  """
  @spec native_codes() :: {[ClusterScope.Native.error_code()], [ClusterScope.Native.error_code()]}
  def native_codes, do: {@native_input_codes, @native_other_codes}

  @doc """
  Turns whatever an operation returned as `{:error, reason}` into an error.

  Accepts an `%Error{}`, a known code atom, `{code, message}`,
  `{code, message, details}`, `{:node_unavailable, node, reason}`, an error of
  the native core `{native_code, detail}` (see `ClusterScope.Native`:
  `invalid_params` when it refuses the input, else `internal`; the detail is
  the message and `details.native_code` the native code), or any other term
  (reported as `internal`, inspected, never turned into an atom).
  """
  @spec normalize(term()) :: t()
  def normalize(%__MODULE__{} = error), do: error
  def normalize(code) when code in @codes, do: new(code, default_message(code))

  def normalize({code, message}) when code in @codes and is_binary(message),
    do: new(code, message)

  def normalize({code, message, details})
      when code in @codes and is_binary(message) and is_map(details),
      do: new(code, message, details: details)

  def normalize({code, detail}) when code in @native_input_codes and is_binary(detail) do
    new(:invalid_params, detail,
      details: %{native_code: code},
      remediation: ["Fix the input the message names; GET /api/openapi.json has the schema."]
    )
  end

  def normalize({code, detail}) when code in @native_other_codes and is_binary(detail) do
    new(:internal, detail,
      details: %{native_code: code},
      remediation: [
        "The native core refused the call in its current state (see the message): " <>
          "retry, and report it if it persists."
      ]
    )
  end

  def normalize({:node_unavailable, node, reason}) when is_atom(node) do
    new(:node_unavailable, "node #{node} did not answer: #{inspect(reason)}",
      details: %{node: node, reason: inspect(reason)}
    )
  end

  def normalize(other) do
    new(:internal, "operation failed: " <> inspect(other, limit: 20, printable_limit: 200))
  end

  @doc "The HTTP status of an error code."
  @spec http_status(code()) :: 400..599
  def http_status(:invalid_params), do: 400
  def http_status(:unauthorized), do: 401
  def http_status(:forbidden), do: 403
  def http_status(:not_found), do: 404
  def http_status(:method_not_allowed), do: 405
  def http_status(:payload_too_large), do: 413
  def http_status(:misdirected_request), do: 421
  def http_status(:too_many_requests), do: 429
  def http_status(:internal), do: 500
  def http_status(:node_unavailable), do: 502
  def http_status(:partition), do: 503
  def http_status(:unavailable), do: 503
  def http_status(:native_unavailable), do: 503
  def http_status(:timeout), do: 504

  @doc "A JSON-ready map of the error."
  @spec to_map(t()) :: map()
  def to_map(%__MODULE__{} = e) do
    %{
      code: e.code,
      message: e.message,
      details: e.details,
      cluster: e.cluster,
      remediation: e.remediation
    }
  end

  @doc "The cluster context attached to every error."
  @spec cluster_context() :: map()
  def cluster_context do
    %{
      node: node(),
      connected_nodes: Node.list(),
      mode: ClusterScope.Mode.current(),
      distributed: Node.alive?()
    }
  end

  defp default_message(:invalid_params), do: "invalid parameters"
  defp default_message(:not_found), do: "not found"
  defp default_message(:node_unavailable), do: "a node did not answer"
  defp default_message(:timeout), do: "the operation timed out"
  defp default_message(:partition), do: "the target is on the other side of a partition"
  defp default_message(:forbidden), do: "forbidden"
  defp default_message(:unauthorized), do: "a valid bearer token is required"
  defp default_message(:unavailable), do: "unavailable"
  defp default_message(:native_unavailable), do: "ClusterScope's native core is not loaded"
  defp default_message(:method_not_allowed), do: "method not allowed"
  defp default_message(:payload_too_large), do: "the request body is too large"
  defp default_message(:misdirected_request), do: "this endpoint does not serve that host"
  defp default_message(:too_many_requests), do: "too many requests"
  defp default_message(:internal), do: "internal error"

  defp default_remediation(:invalid_params),
    do: ["Fix the fields listed in details.fields; GET /api/openapi.json has the schema."]

  defp default_remediation(:not_found),
    do: ["Check the name or id; GET /api/v1/operations lists the operations."]

  defp default_remediation(:node_unavailable),
    do: [
      "Check that the node is up and reachable (Node.ping/1, epmd, firewall).",
      "Check that it runs the same cookie and a ClusterScope with the same protocol."
    ]

  defp default_remediation(:timeout),
    do: ["Retry with a narrower request, or raise the operation's timeout.", "Check node load."]

  defp default_remediation(:partition),
    do: ["Ask a node on the other side of the partition, or wait for the heal."]

  defp default_remediation(:forbidden),
    do: ["Check the token, the Origin of the request and the read-only setting."]

  defp default_remediation(:unauthorized),
    do: ["Send `Authorization: Bearer <token>` with the token ClusterScope was configured with."]

  defp default_remediation(:unavailable),
    do: ["See details.reason; install or start what the operation requires."]

  defp default_remediation(:native_unavailable),
    do: ["Rebuild with `mix compile` (needs cargo) and check the boot log for the NIF error."]

  defp default_remediation(:method_not_allowed),
    do: ["Use one of the methods in details.allowed."]

  defp default_remediation(:payload_too_large),
    do: ["Send a smaller body, or raise the `http: [max_body_bytes: ...]` option."]

  defp default_remediation(:misdirected_request),
    do: [
      "Address the endpoint by a loopback name or IP, or add the host to http: [allowed_hosts: ...]."
    ]

  defp default_remediation(:too_many_requests),
    do: [
      "Retry after the number of seconds in the Retry-After header; send fewer requests at once."
    ]

  defp default_remediation(:internal),
    do: ["This is a bug in the operation; the node's log has the stacktrace."]
end
