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

  Between validation and execution it checks the operation's partition
  policy against this node's view of the cluster
  (`ClusterScope.Operation.Partition`): a refusal is a `partition` error,
  unless the call passed `force_partition: true`, which runs it and records
  `partition: %{forced: true, ...}` in the metadata.

  The operation's process carries a run context (`ClusterScope.Fanout.Retry`):
  its deadline and whether it is an idempotent read, so `ClusterScope.Fanout`
  retries transient node errors of idempotent reads within the deadline,
  and reports the nodes that answered. Changes are never retried, even
  idempotent ones: a retried request queued behind a connection attempt can
  reach its node after the answer called that node pending.

  It returns the data with metadata (operation, version, node, duration_us,
  partial, node_errors, nodes_answered: the nodes whose answers went into
  the result, this node alone for a local operation; `partition` when the
  check refused or was forced), or a `ClusterScope.Error` with the same
  metadata.

  ## Protection

  At most `max_concurrency` operations (default 64) run at once on a node;
  past that the runner answers `unavailable` at once rather than queueing
  work on a node that is already busy. An operation's process is never linked
  to the caller (a crash in it cannot take the caller down) and never outlives
  its timeout (it is killed).
  """

  alias ClusterScope.Error
  alias ClusterScope.Fanout.Retry
  alias ClusterScope.Operation.{Partition, Registry}

  @supervisor ClusterScope.OperationSupervisor

  @typedoc "What every run reports besides its data."
  @type metadata :: %{
          optional(:partition) => map(),
          required(:operation) => String.t() | nil,
          required(:version) => pos_integer() | nil,
          required(:node) => node(),
          required(:duration_us) => non_neg_integer(),
          required(:partial) => boolean(),
          required(:node_errors) => [map()],
          required(:nodes_answered) => [node()]
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

    ref = make_ref()

    result =
      with {:ok, meta} <- resolve(op, Keyword.get(opts, :version, :latest)),
           :ok <- available(meta),
           {:ok, valid} <- validate(meta, params, opts),
           {force, valid} = pop_force(valid),
           {:ok, partition} <- check_partition(meta, force),
           valid = put_context(valid, opts),
           {:ok, result} <-
             ClusterScope.Telemetry.span_operation(meta, fn ->
               execute(meta, valid, opts, ref)
             end) do
        {:ok, meta, format(meta, result), partition}
      end

    {result, partition} =
      case result do
        {:ok, meta, data, partition} -> {{:ok, meta, data}, partition}
        {:error, meta, error, partition} -> {{:error, meta, error}, partition}
        other -> {other, nil}
      end

    result
    |> finish(started, Retry.collect(ref))
    |> then(fn {status, data, metadata} -> {status, data, put_partition(metadata, partition)} end)
  end

  defp pop_force(params) when is_map(params), do: Map.pop(params, :force_partition, false)
  defp pop_force(params), do: {false, params}

  # The partition policy against this node's view: nil (nothing to record),
  # the facts of a forced run, or a refusal.
  defp check_partition(%{partition: :anywhere}, _force), do: {:ok, nil}

  defp check_partition(meta, force) do
    situation = Partition.situation()

    case Partition.decide(Map.get(meta, :partition, :anywhere), situation) do
      :ok ->
        {:ok, nil}

      {:refuse, _why} when force == true ->
        {:ok, Partition.facts(meta.partition, situation, true)}

      {:refuse, why} ->
        error = Partition.refusal(meta, situation, why)
        {:error, meta, error, error.details}
    end
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

  defp execute(meta, params, opts, ref) do
    timeout =
      Keyword.get(opts, :timeout) || meta.timeout ||
        ClusterScope.Config.get(:node_timeout_ms) + 1_000

    context = %{
      deadline: System.monotonic_time(:millisecond) + timeout,
      # Only reads are retried: a retried change could reach a node after
      # the answer called it pending (a request queued behind a connection
      # attempt is delivered when the link comes back).
      idempotent: Map.get(meta, :idempotent, false) and not meta.mutating,
      report_to: self(),
      ref: ref
    }

    case start_task(fn ->
           Retry.run(context, fn -> safe(fn -> meta.module.execute(params) end) end)
         end) do
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

  defp finish(result, started, answered) do
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
        # An operation that called no node answered from here.
        answered = if answered == [], do: [node()], else: answered
        {:ok, data, metadata(meta, duration_us, node_errors, answered)}

      {:error, meta, %Error{} = error} ->
        rules = ClusterScope.Secrets.rules()

        error = %{
          error
          | message: ClusterScope.Redact.text(error.message, rules),
            details: ClusterScope.Redact.term(error.details, rules)
        }

        {:error, error, metadata(meta, duration_us, [], answered)}
    end
  end

  defp put_partition(metadata, nil), do: metadata
  defp put_partition(metadata, partition), do: Map.put(metadata, :partition, partition)

  defp node_errors(%{node_errors: errors}) when is_list(errors), do: errors
  defp node_errors(_), do: []

  defp metadata(meta, duration_us, node_errors, answered) do
    %{
      operation: meta && meta.name,
      version: meta && meta.version,
      node: node(),
      duration_us: duration_us,
      partial: node_errors != [],
      node_errors: node_errors,
      nodes_answered: answered
    }
  end
end
