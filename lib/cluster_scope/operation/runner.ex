defmodule ClusterScope.Operation.Runner do
  @moduledoc """
  Runs every operation, from every surface, the same way.

  1. Resolves the operation (a module, or a name and version) in the registry.
  2. Checks its requirements (`unavailable`, `native_unavailable`).
  3. Validates the parameters (`invalid_params`, naming every bad field).
  4. Executes it in a separate process under its timeout: a raise, exit or
     throw becomes an `internal` error, an overrun a `timeout` error (the
     process is killed), and `{:error, reason}` is normalised by
     `ClusterScope.Error.normalize/1`.
  5. Formats the result with the operation's `format_response/1`.

  It returns the data with metadata (operation, version, node, duration_us,
  partial, node_errors), or a `ClusterScope.Error` with the same metadata.

  ## Protection

  At most `max_concurrency` operations (default 64) run at once on a node;
  past that the runner answers `unavailable` at once rather than queueing
  work on a node that is already busy. An operation's process is never linked
  to the caller (a crash in it cannot take the caller down) and never outlives
  its timeout (it is killed).
  """

  alias ClusterScope.Error
  alias ClusterScope.Operation.Registry

  @supervisor ClusterScope.OperationSupervisor

  @typedoc "What every run reports besides its data."
  @type metadata :: %{
          operation: String.t() | nil,
          version: pos_integer() | nil,
          node: node(),
          duration_us: non_neg_integer(),
          partial: boolean(),
          node_errors: [map()]
        }

  @doc """
  Runs `op` with raw `params`.

  Options: `:version` (with a name), `:timeout` (ms, overrides the
  operation's), `:validated` (`true` when params come from
  `validate_params/1` already), `:context` (a map the operation receives
  under the `:__context__` key of its params, e.g. `%{read_only: true}` from
  a read-only HTTP endpoint; operations run by an Arsenal host get none).
  """
  @spec run(module() | String.t() | map(), map(), keyword()) ::
          {:ok, map(), metadata()} | {:error, Error.t(), metadata()}
  def run(op, params, opts \\ []) do
    started = System.monotonic_time()

    result =
      with {:ok, meta} <- resolve(op, Keyword.get(opts, :version, :latest)),
           :ok <- available(meta),
           {:ok, valid} <- validate(meta, params, opts),
           valid = put_context(valid, opts),
           {:ok, result} <-
             ClusterScope.Telemetry.span_operation(meta, fn -> execute(meta, valid, opts) end) do
        {:ok, meta, format(meta, result)}
      end

    finish(result, started)
  end

  @doc false
  # The data that will reach the caller, from the operation's format.
  def format(meta, result) do
    meta.module.format_response(result)
  end

  defp put_context(params, opts) do
    case Keyword.fetch(opts, :context) do
      {:ok, context} when is_map(params) -> Map.put(params, :__context__, context)
      _ -> params
    end
  end

  defp resolve(%{module: _} = meta, _version), do: {:ok, meta}

  defp resolve(op, version) do
    case Registry.lookup(op, version) do
      {:ok, meta} ->
        {:ok, meta}

      {:error, :not_found} ->
        name = if is_atom(op), do: inspect(op), else: op
        {:error, nil, Error.new(:not_found, "no operation #{name} is registered on #{node()}")}
    end
  catch
    :exit, _ ->
      {:error, nil,
       Error.new(:unavailable, "ClusterScope is not started on #{node()}",
         remediation: ["Start the :cluster_scope application."]
       )}
  end

  defp available(meta) do
    case ClusterScope.Operation.availability(meta) do
      :ok ->
        :ok

      {:error, reason} ->
        code =
          if :native in meta.requires and not ClusterScope.Native.loaded?(),
            do: :native_unavailable,
            else: :unavailable

        {:error, meta,
         Error.new(code, "#{meta.name} is unavailable: #{reason}", details: %{reason: reason})}
    end
  end

  defp validate(meta, params, opts) do
    if Keyword.get(opts, :validated, false) do
      {:ok, params}
    else
      case safe(fn -> meta.module.validate_params(params) end) do
        {:ok, {:ok, valid}} ->
          {:ok, valid}

        {:ok, {:error, fields}} when is_list(fields) ->
          {:error, meta,
           Error.new(:invalid_params, invalid_message(fields), details: %{fields: fields})}

        {:ok, {:error, reason}} ->
          {:error, meta, invalid(reason)}

        {:raised, message} ->
          {:error, meta, Error.new(:internal, "validate_params raised: " <> message)}
      end
    end
  end

  defp execute(meta, params, opts) do
    timeout =
      Keyword.get(opts, :timeout) || meta.timeout ||
        ClusterScope.Config.get(:node_timeout_ms) + 1_000

    case start_task(fn -> safe(fn -> meta.module.execute(params) end) end) do
      {:ok, task} ->
        case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
          {:ok, {:ok, {:ok, result}}} ->
            {:ok, result}

          {:ok, {:ok, {:error, reason}}} ->
            {:error, meta, Error.normalize(reason)}

          {:ok, {:ok, other}} ->
            {:error, meta,
             Error.new(:internal, "execute/1 returned #{inspect(other, limit: 10)}")}

          {:ok, {:raised, message}} ->
            {:error, meta, Error.new(:internal, message)}

          {:exit, reason} ->
            {:error, meta,
             Error.new(:internal, "the operation's process exited: #{inspect(reason, limit: 10)}")}

          nil ->
            {:error, meta,
             Error.new(:timeout, "#{meta.name} did not finish within #{timeout} ms",
               details: %{timeout_ms: timeout}
             )}
        end

      {:error, :max_children} ->
        {:error, meta,
         Error.new(:unavailable, "too many operations are running on #{node()}",
           remediation: ["Retry shortly; this node is already serving its limit of operations."]
         )}
    end
  end

  defp start_task(fun) do
    case Process.whereis(@supervisor) do
      nil -> {:ok, Task.async(fun)}
      _ -> {:ok, Task.Supervisor.async_nolink(@supervisor, fun)}
    end
  rescue
    # async_nolink raises when the supervisor refuses a child (max_children).
    _ -> {:error, :max_children}
  end

  # Runs fun, turning raise/exit/throw into {:raised, message}.
  defp safe(fun) do
    {:ok, fun.()}
  rescue
    e -> {:raised, Exception.message(e)}
  catch
    kind, reason -> {:raised, "#{kind}: #{inspect(reason, limit: 10)}"}
  end

  defp invalid(%Error{} = e), do: e
  defp invalid(message) when is_binary(message), do: Error.new(:invalid_params, message)

  defp invalid(reason),
    do: Error.new(:invalid_params, "invalid parameters: #{inspect(reason, limit: 10)}")

  defp invalid_message(fields) do
    "invalid parameters: " <>
      Enum.map_join(fields, "; ", fn
        %{field: f, message: m} -> "#{f} #{m}"
        other -> inspect(other)
      end)
  end

  defp finish(result, started) do
    duration_us =
      System.convert_time_unit(System.monotonic_time() - started, :native, :microsecond)

    # Every run's latency, success or error (meta is nil for an unknown
    # operation); never raises, well under a microsecond or two.
    ClusterScope.Metrics.OperationLatency.record(elem(result, 1), duration_us)

    # Secrets never leave the node, whatever the operation put in its
    # answer or its error (a state, a reply, an inspected exit reason).
    case result do
      {:ok, meta, data} ->
        data = ClusterScope.Secrets.redact(data)
        node_errors = node_errors(data)
        {:ok, data, metadata(meta, duration_us, node_errors)}

      {:error, meta, %Error{} = error} ->
        rules = ClusterScope.Secrets.rules()

        error = %{
          error
          | message: ClusterScope.Redact.text(error.message, rules),
            details: ClusterScope.Redact.term(error.details, rules)
        }

        {:error, error, metadata(meta, duration_us, [])}
    end
  end

  defp node_errors(%{node_errors: errors}) when is_list(errors), do: errors
  defp node_errors(_), do: []

  defp metadata(meta, duration_us, node_errors) do
    %{
      operation: meta && meta.name,
      version: meta && meta.version,
      node: node(),
      duration_us: duration_us,
      partial: node_errors != [],
      node_errors: node_errors
    }
  end
end
