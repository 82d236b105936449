defmodule ClusterScope.Operation do
  @moduledoc """
  The operation contract: one definition served on every surface.

  An operation is a module with these callbacks (the REST part of the
  Arsenal operation contract):

    * `rest_config/0` - `%{method:, path:, summary:, parameters:, responses:}`;
      `path` like `"/api/v1/processes/:pid"`; each parameter
      `%{name:, type:, required:, location: :path | :query | :body, description:}`
      (see `ClusterScope.Operation.Params` for types and bounds)
    * `validate_params/1` - `{:ok, params} | {:error, reason}`
    * `execute/1` - `{:ok, result} | {:error, reason}`
    * `format_response/1` - a JSON-ready map

  `use ClusterScope.Operation` writes `validate_params/1` from the declared
  parameters (override `check_params/1` to add checks of your own) and a
  default `format_response/1`, and records ClusterScope's own metadata:

      use ClusterScope.Operation,
        name: "node_build_info",   # default: the module name, snake_cased
        version: 1,                # several versions of one route may be served
        mutating: false,           # default: true unless the method is GET
        scope: :read,              # :read | :sensitive | :control (default:
                                   # :control when mutating, else :read)
        requires: [:native],       # :native, :horde, :libcluster, :telemetry
        timeout: 10_000,           # ms, default: node_timeout_ms + 1 s
        partition: :anywhere,      # :anywhere | :majority | :all_nodes (default:
                                   # :majority when mutating, else :anywhere)
        idempotent: true           # default: not mutating

  ## Partition policy and idempotence

  `partition` says where in a partitioned cluster the operation may run,
  as this node's `ClusterScope.Cluster.State` classifies it; the runner
  checks it before executing (`ClusterScope.Operation.Partition`):

    * `:anywhere` - always (reads; tools that must keep working on both
      sides of a split, like tracing and the mode switch);
    * `:majority` - refused with a `partition` error when this node is on
      the minority side (or a tie) of a split: a change made by a minority
      would diverge from what the majority does meanwhile (a process Horde
      restarts there, thresholds the other side never gets);
    * `:all_nodes` - refused unless every known node is up and reachable
      (a change that is wrong when any node misses it).

  An operation whose policy is not `:anywhere` takes a boolean
  `force_partition` parameter (added to its parameters: OpenAPI, CLI,
  Arsenal) that runs it anyway; the answer's metadata then records
  `partition.forced: true` with the situation it was forced through. (It is
  not `force`: `kill_process`, `send_message` and `trace_process` already
  use `force` for protected processes and hot modules, and one flag must
  not unlock both.)

  `idempotent` says that running it twice is the same as once (clients may
  retry it; the Arsenal metadata says so). For a read, its calls to other
  nodes are also retried on a transient node error (see
  `ClusterScope.Fanout`), within its deadline; a change is never retried
  by ClusterScope (a request queued behind a connection attempt could reach
  its node after the answer called that node pending).

  It also generates `<Operation>.Arsenal`, the operation's face for a host's
  Arsenal registry (`name/0` as `:cluster_scope_<name>`, `category/0`,
  `description/0`, `params_schema/0`, `metadata/0`, `authorize/2`, and an
  `execute/1` that runs the operation through the runner under a deadline
  below Arsenal's 5 s call timeout): see `ClusterScope.Arsenal.Face`. The
  operation module itself exports no `name/0`: registered in Arsenal as is,
  its bare `execute/1` would skip the runner, so Arsenal refuses it.

  Every surface runs operations through `ClusterScope.Operation.Runner`, which
  validates, executes under the timeout, and turns every failure into a
  `ClusterScope.Error`. From `rest_config/0` the registry derives the HTTP
  route, the OpenAPI entry and the CLI flags.

  A result that is a map with a `:node_errors` key (a list) is a partial
  cluster-wide answer: the runner reports those errors in the response
  metadata, and `partial: true` when the list is not empty.
  """

  @typedoc "An operation module."
  @type t :: module()

  @typedoc "ClusterScope's metadata of an operation."
  @type meta :: %{
          module: module(),
          name: String.t(),
          version: pos_integer(),
          method: :get | :post | :put | :patch | :delete,
          path: String.t(),
          segments: [String.t() | {:param, atom()}],
          summary: String.t(),
          parameters: [ClusterScope.Operation.Params.spec()],
          responses: map(),
          mutating: boolean(),
          scope: scope(),
          requires: [atom()],
          timeout: pos_integer() | nil,
          partition: partition_policy(),
          idempotent: boolean(),
          md5: binary()
        }

  @typedoc "Where in a partitioned cluster an operation may run (see the module doc)."
  @type partition_policy :: :anywhere | :majority | :all_nodes

  @typedoc """
  The authority an operation needs (see `ClusterScope.Web.Handler`):

    * `:read` - topology, health, metrics, process rows: nothing a secret
      can hide in;
    * `:sensitive` - process state, dictionaries, mailboxes, trace events
      and their arguments: anything that can hold a cookie or a password;
    * `:control` - anything that changes the cluster (kill, send, trace,
      thresholds, mode).
  """
  @type scope :: :read | :sensitive | :control

  @scopes [:read, :sensitive, :control]
  @partition_policies [:anywhere, :majority, :all_nodes]

  @force_partition %{
    name: :force_partition,
    type: :boolean,
    required: false,
    default: false,
    location: :body,
    description:
      "run even where the partition policy refuses it (minority side of a split, " <>
        "unreachable nodes); the answer records it in metadata.partition"
  }

  @callback rest_config() :: map()
  @callback validate_params(map()) :: {:ok, map()} | {:error, term()}
  @callback execute(map()) :: {:ok, term()} | {:error, term()}
  @callback format_response(term()) :: map()

  @requirements [:native, :horde, :libcluster, :telemetry]
  @methods [:get, :post, :put, :patch, :delete]

  defmacro __using__(opts) do
    quote location: :keep do
      @behaviour ClusterScope.Operation
      @cluster_scope_operation_opts unquote(opts)

      @doc false
      def __cluster_scope_operation__, do: @cluster_scope_operation_opts

      @impl ClusterScope.Operation
      def validate_params(params) do
        with {:ok, params} <-
               ClusterScope.Operation.Params.validate(
                 ClusterScope.Operation.parameters(__MODULE__, rest_config()),
                 params
               ) do
          check_params(params)
        end
      end

      @doc false
      def check_params(params), do: {:ok, params}

      @impl ClusterScope.Operation
      def format_response(result), do: ClusterScope.Operation.default_format(result)

      defoverridable validate_params: 1, format_response: 1, check_params: 1

      # The module an Arsenal registry registers: `<this module>.Arsenal`.
      require ClusterScope.Arsenal.Face
      ClusterScope.Arsenal.Face.define()
    end
  end

  @doc "The requirements an operation may declare."
  @spec requirements() :: [atom()]
  def requirements, do: @requirements

  @doc """
  Reads and checks the metadata of an operation module: a ClusterScope one
  (`use ClusterScope.Operation`) or any module following the Arsenal contract.
  """
  @spec meta(module()) :: {:ok, meta()} | {:error, String.t()}
  def meta(module) when is_atom(module) do
    with true <-
           Code.ensure_loaded?(module) || {:error, "module #{inspect(module)} is not loaded"},
         :ok <- check_exports(module),
         config when is_map(config) <- module.rest_config(),
         {:ok, method} <- method(config),
         {:ok, path, segments} <- path(config),
         opts = own_opts(module),
         {:ok, requires} <- requires(opts),
         mutating = Keyword.get(opts, :mutating, method != :get),
         {:ok, scope} <- scope(opts, mutating),
         {:ok, partition} <- partition(opts, mutating),
         {:ok, idempotent} <- idempotent(opts, mutating),
         parameters = with_force(Map.get(config, :parameters, []), partition),
         :ok <- ClusterScope.Operation.Params.check_specs(parameters),
         :ok <- check_path_params(segments, parameters) do
      {:ok,
       %{
         module: module,
         name: Keyword.get_lazy(opts, :name, fn -> default_name(module) end),
         version: Keyword.get(opts, :version, 1),
         method: method,
         path: path,
         segments: segments,
         summary: Map.get(config, :summary, ""),
         parameters: parameters,
         responses: Map.get(config, :responses, %{}),
         mutating: mutating,
         scope: scope,
         requires: requires,
         timeout: Keyword.get(opts, :timeout),
         partition: partition,
         idempotent: idempotent,
         md5: module.module_info(:md5)
       }}
    else
      {:error, _} = error ->
        error

      other ->
        {:error, "#{inspect(module)}.rest_config/0 must return a map, got #{inspect(other)}"}
    end
  end

  @doc """
  Whether the operation's requirements are met here: `:ok` or
  `{:error, reason}` naming what is missing.
  """
  @spec availability(meta()) :: :ok | {:error, String.t()}
  def availability(%{requires: requires} = meta) do
    with :ok <- ClusterScope.Features.check(Map.get(meta, :name, "")) do
      Enum.find_value(requires, :ok, fn req ->
        if not requirement_met?(req), do: {:error, missing(req)}
      end)
    end
  end

  @doc "The default `format_response/1`: maps pass through, other terms are wrapped."
  @spec default_format(term()) :: map()
  def default_format(result) when is_map(result), do: result
  def default_format(result), do: %{result: result}

  defp requirement_met?(:native), do: ClusterScope.Native.loaded?()
  defp requirement_met?(:horde), do: Code.ensure_loaded?(Horde.Registry)
  defp requirement_met?(:libcluster), do: Code.ensure_loaded?(Cluster.Strategy)
  defp requirement_met?(:telemetry), do: Code.ensure_loaded?(:telemetry)

  defp missing(:native), do: "ClusterScope's native core is not loaded"

  defp missing(:horde),
    do: "Horde is not available (add {:horde, \"~> 0.10\"} to the host's deps)"

  defp missing(:libcluster),
    do: "libcluster is not available (add {:libcluster, \"~> 3.5\"} to the host's deps)"

  defp missing(:telemetry), do: "telemetry is not available"

  defp check_exports(module) do
    missing =
      for {f, a} <- [rest_config: 0, validate_params: 1, execute: 1, format_response: 1],
          not function_exported?(module, f, a),
          do: "#{f}/#{a}"

    case missing do
      [] -> :ok
      _ -> {:error, "#{inspect(module)} does not implement #{Enum.join(missing, ", ")}"}
    end
  end

  defp own_opts(module) do
    if function_exported?(module, :__cluster_scope_operation__, 0),
      do: module.__cluster_scope_operation__(),
      else: []
  end

  defp method(%{method: m}) when m in @methods, do: {:ok, m}

  defp method(%{method: m}) when is_binary(m) do
    case Enum.find(@methods, &(Atom.to_string(&1) == String.downcase(m))) do
      nil -> {:error, "unsupported method #{inspect(m)}"}
      method -> {:ok, method}
    end
  end

  defp method(config),
    do: {:error, "rest_config has no valid :method: #{inspect(config[:method])}"}

  defp path(%{path: "/" <> _ = path}) do
    segments =
      path
      |> String.split("/", trim: true)
      |> Enum.map(fn
        # A path parameter must be declared (as an atom) in :parameters, so
        # its atom already exists.
        ":" <> name -> {:param, existing_atom(name)}
        literal -> literal
      end)

    {:ok, path, segments}
  end

  defp path(config),
    do: {:error, "rest_config needs a :path starting with /: #{inspect(config[:path])}"}

  defp check_path_params(segments, parameters) do
    declared = for %{name: n, location: :path} <- parameters, do: n

    case for({:param, n} <- segments, n not in declared, do: n) do
      [] ->
        :ok

      missing ->
        {:error, "path parameters not declared with location: :path: #{inspect(missing)}"}
    end
  end

  defp requires(opts) do
    requires = Keyword.get(opts, :requires, [])

    case requires -- @requirements do
      [] ->
        {:ok, requires}

      unknown ->
        {:error, "unknown requirements #{inspect(unknown)}; known: #{inspect(@requirements)}"}
    end
  end

  # A mutating operation is always :control: a weaker scope would let a
  # read token change the cluster.
  defp scope(opts, mutating) do
    case Keyword.get(opts, :scope, if(mutating, do: :control, else: :read)) do
      :control ->
        {:ok, :control}

      scope when scope in @scopes and not mutating ->
        {:ok, scope}

      scope when scope in @scopes ->
        {:error, "a mutating operation has scope :control, not #{inspect(scope)}"}

      other ->
        {:error, "unknown scope #{inspect(other)}; known: #{inspect(@scopes)}"}
    end
  end

  @doc """
  The parameters an operation validates: those of its `rest_config`, plus
  `force_partition` when its partition policy is not `:anywhere`.
  """
  @spec parameters(module(), map()) :: [ClusterScope.Operation.Params.spec()]
  def parameters(module, config) do
    opts = own_opts(module)
    mutating = Keyword.get_lazy(opts, :mutating, fn -> method(config) != {:ok, :get} end)

    case partition(opts, mutating) do
      {:ok, policy} -> with_force(Map.get(config, :parameters, []), policy)
      {:error, _} -> Map.get(config, :parameters, [])
    end
  end

  @doc "The partition policies (see the module doc)."
  @spec partition_policies() :: [partition_policy()]
  def partition_policies, do: @partition_policies

  defp partition(opts, mutating) do
    case Keyword.get(opts, :partition, if(mutating, do: :majority, else: :anywhere)) do
      policy when policy in @partition_policies ->
        {:ok, policy}

      other ->
        {:error,
         "unknown partition policy #{inspect(other)}; known: #{inspect(@partition_policies)}"}
    end
  end

  defp idempotent(opts, mutating) do
    case Keyword.get(opts, :idempotent, not mutating) do
      value when is_boolean(value) -> {:ok, value}
      other -> {:error, "idempotent must be a boolean, got #{inspect(other)}"}
    end
  end

  defp with_force(parameters, :anywhere), do: parameters

  defp with_force(parameters, _policy) do
    if Enum.any?(parameters, &(&1.name == :force_partition)),
      do: parameters,
      else: parameters ++ [@force_partition]
  end

  @doc "The scopes of authority, weakest first."
  @spec scopes() :: [scope()]
  def scopes, do: @scopes

  defp existing_atom(name) do
    String.to_existing_atom(name)
  rescue
    ArgumentError -> {:undeclared, name}
  end

  defp default_name(module) do
    module |> Module.split() |> List.last() |> Macro.underscore()
  end
end
