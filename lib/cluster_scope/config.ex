defmodule ClusterScope.Config do
  @moduledoc """
  ClusterScope's configuration: one schema, validated once at start.

  Set options in the host application's config:

      config :cluster_scope,
        native_path: nil,
        node_timeout_ms: 5_000

  ## Options

  * `:native_path` - path of the NIF library without extension; `nil` (the
    default) loads `priv/native/libcluster_scope_nif.so`.
  * `:node_timeout_ms` - default timeout of a call to one node, in
    milliseconds (`1..600_000`, default `5_000`). A cluster-wide call never
    waits longer than this for a node before reporting it in `node_errors`.

  ## Why a bad option does not stop the host

  Validation errors are logged as one clear message per option (naming the
  option, the bad value and what is expected) and the option falls back to its
  default: a debugging library must never stop the application it observes.
  `errors/0` returns the problems found at the last load, so a test or a
  health probe can still fail on them.
  """

  require Logger

  @key {__MODULE__, :config}
  @errors_key {__MODULE__, :errors}

  @schema [
    native_path: [type: :path, default: nil],
    node_timeout_ms: [type: {:integer, 1, 600_000}, default: 5_000]
  ]

  @typedoc "A validated configuration."
  @type t :: %{atom() => term()}

  @typedoc "One validation problem: the option and a message."
  @type error :: {atom(), String.t()}

  @doc "The options ClusterScope knows, with their defaults."
  @spec defaults() :: t()
  def defaults, do: Map.new(@schema, fn {key, spec} -> {key, spec[:default]} end)

  @doc """
  Validates a keyword list of options.

  Returns `{:ok, config}` when every option is valid, or
  `{:error, config, errors}` where `config` has the defaults in place of the
  invalid options and `errors` names each of them.
  """
  @spec validate(keyword()) :: {:ok, t()} | {:error, t(), [error()]}
  def validate(opts) when is_list(opts) do
    {config, errors} =
      Enum.reduce(opts, {defaults(), []}, fn {key, value}, {config, errors} ->
        case Keyword.fetch(@schema, key) do
          {:ok, spec} ->
            case check(spec[:type], value) do
              :ok -> {Map.put(config, key, value), errors}
              {:error, message} -> {config, [{key, "#{inspect(value)} #{message}"} | errors]}
            end

          :error ->
            known = @schema |> Keyword.keys() |> Enum.map_join(", ", &inspect/1)
            {config, [{key, "is not a ClusterScope option (known: #{known})"} | errors]}
        end
      end)

    case errors do
      [] -> {:ok, config}
      _ -> {:error, config, Enum.reverse(errors)}
    end
  end

  @doc """
  Reads `Application.get_all_env(:cluster_scope)`, validates it, logs each
  problem, and stores the result for `get/1`. Called by the application at
  start; calling it again reloads the configuration.
  """
  @spec load() :: t()
  def load do
    env =
      :cluster_scope
      |> Application.get_all_env()
      |> Keyword.drop([:included_applications])

    {config, errors} =
      case validate(env) do
        {:ok, config} -> {config, []}
        {:error, config, errors} -> {config, errors}
      end

    for {key, message} <- errors do
      Logger.error(
        "ClusterScope config: option #{inspect(key)} #{message}; using the default " <>
          "#{inspect(Map.get(defaults(), key))}."
      )
    end

    :persistent_term.put(@key, config)
    :persistent_term.put(@errors_key, errors)
    config
  end

  @doc "The value of one option (the default when not loaded yet)."
  @spec get(atom()) :: term()
  def get(key) when is_atom(key) do
    @key |> :persistent_term.get(defaults()) |> Map.fetch!(key)
  end

  @doc "The problems found at the last `load/0`."
  @spec errors() :: [error()]
  def errors, do: :persistent_term.get(@errors_key, [])

  defp check(:path, nil), do: :ok
  defp check(:path, value) when is_binary(value) and value != "", do: :ok
  defp check(:path, _), do: {:error, "must be a non-empty string path or nil"}

  defp check({:integer, min, max}, value) when is_integer(value) and value in min..max, do: :ok
  defp check({:integer, min, max}, _), do: {:error, "must be an integer in #{min}..#{max}"}
end
