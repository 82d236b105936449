defmodule ClusterScope.Operation.Registry do
  @moduledoc """
  Every operation this node serves, with its metadata cached.

  At start it discovers ClusterScope's own operations from the application's
  module list (every module under `ClusterScope.Operations` that `use`s
  `ClusterScope.Operation`): there is no hand-kept list. Hosts add their own at run time with `register/1` and
  remove them with `unregister/1`; the next request sees the change.

  ## Cost

  The table lives in a `:persistent_term`: a lookup is a read with no copy and
  no message to this process. Writes (register, unregister, refresh) go
  through this GenServer and are rare; each replaces the term once. When an
  operation's module is reloaded (its MD5 changes), the next lookup refreshes
  its metadata.
  """

  use GenServer

  alias ClusterScope.Operation

  @table {__MODULE__, :operations}

  @doc false
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Registers an operation module (a ClusterScope operation or any module with
  the Arsenal contract). Fails with a reason when the module does not follow
  the contract, or when its name and version, or its method, path and
  version, are already served by another module.
  """
  @spec register(module()) :: {:ok, Operation.meta()} | {:error, String.t()}
  def register(module) when is_atom(module), do: GenServer.call(__MODULE__, {:register, module})

  @doc "Stops serving an operation module. `:ok` even when it was not registered."
  @spec unregister(module()) :: :ok
  def unregister(module) when is_atom(module),
    do: GenServer.call(__MODULE__, {:unregister, module})

  @doc """
  Every registered operation with its availability:
  `[{meta, :ok | {:error, reason}}]`, sorted by path, method and version.
  """
  @spec list() :: [{Operation.meta(), :ok | {:error, String.t()}}]
  def list do
    all() |> Enum.map(&fresh/1) |> Enum.map(&{&1, Operation.availability(&1)})
  end

  @doc """
  Finds an operation by module, or by name and version (`:latest` by default).
  """
  @spec lookup(module() | String.t(), pos_integer() | :latest) ::
          {:ok, Operation.meta()} | {:error, :not_found}
  def lookup(op, version \\ :latest)

  def lookup(module, _version) when is_atom(module) do
    case Enum.find(all(), &(&1.module == module)) do
      nil -> {:error, :not_found}
      meta -> {:ok, fresh(meta)}
    end
  end

  def lookup(name, version) when is_binary(name) do
    all()
    |> Enum.filter(&(&1.name == name and (version == :latest or &1.version == version)))
    |> Enum.max_by(& &1.version, fn -> nil end)
    |> case do
      nil -> {:error, :not_found}
      meta -> {:ok, fresh(meta)}
    end
  end

  @doc """
  Matches an HTTP request to an operation.

  `version` selects among several versions served on the same method and
  path (`:latest` by default). Returns the operation with its path
  parameters (string keys), `{:error, {:method_not_allowed, methods}}` when
  the path exists with other methods, or `{:error, :not_found}`.
  """
  @spec match(atom(), [String.t()], pos_integer() | :latest) ::
          {:ok, Operation.meta(), %{String.t() => String.t()}}
          | {:error, :not_found | {:method_not_allowed, [atom()]}}
  def match(method, segments, version \\ :latest) do
    candidates =
      for meta <- all(), {:ok, params} <- [match_segments(meta.segments, segments, %{})] do
        {meta, params}
      end

    case Enum.filter(candidates, fn {meta, _} -> meta.method == method end) do
      [] when candidates == [] ->
        {:error, :not_found}

      [] ->
        {:error,
         {:method_not_allowed, candidates |> Enum.map(&elem(&1, 0).method) |> Enum.uniq()}}

      same_route ->
        same_route
        |> Enum.filter(fn {meta, _} -> version == :latest or meta.version == version end)
        |> Enum.max_by(fn {meta, _} -> meta.version end, fn -> nil end)
        |> case do
          nil -> {:error, :not_found}
          {meta, params} -> {:ok, fresh(meta), params}
        end
    end
  end

  @doc "Rediscovers ClusterScope's own operations and refreshes every entry."
  @spec refresh() :: :ok
  def refresh, do: GenServer.call(__MODULE__, :refresh)

  # -- server ------------------------------------------------------------------

  @impl true
  def init(_opts) do
    # The table is a persistent term: it outlives a crash of this server, and
    # the operations a host registered stay served after the restart.
    builtin = discover()
    builtin_modules = MapSet.new(builtin, & &1.module)

    hosted =
      for meta <- all(),
          not MapSet.member?(builtin_modules, meta.module),
          Code.ensure_loaded?(meta.module),
          do: meta

    put(builtin ++ hosted)
    {:ok, nil}
  end

  @impl true
  def handle_call({:register, module}, _from, state) do
    with {:ok, meta} <- Operation.meta(module),
         :ok <- check_conflicts(meta, Enum.reject(all(), &(&1.module == module))) do
      put([meta | Enum.reject(all(), &(&1.module == module))])
      {:reply, {:ok, meta}, state}
    else
      {:error, _} = error -> {:reply, error, state}
    end
  end

  def handle_call({:unregister, module}, _from, state) do
    put(Enum.reject(all(), &(&1.module == module)))
    {:reply, :ok, state}
  end

  def handle_call({:refresh_module, module}, _from, state) do
    others = Enum.reject(all(), &(&1.module == module))

    reply =
      case Operation.meta(module) do
        {:ok, meta} ->
          put([meta | others])
          {:ok, meta}

        {:error, _} = error ->
          # The new code no longer follows the contract: stop serving it.
          put(others)
          error
      end

    {:reply, reply, state}
  end

  def handle_call(:refresh, _from, state) do
    builtin = discover()
    builtin_modules = MapSet.new(builtin, & &1.module)

    hosted =
      for meta <- all(),
          not MapSet.member?(builtin_modules, meta.module),
          {:ok, fresh} <- [Operation.meta(meta.module)],
          do: fresh

    put(builtin ++ hosted)
    {:reply, :ok, state}
  end

  # -- internals ---------------------------------------------------------------

  defp all, do: :persistent_term.get(@table, [])

  defp put(metas) do
    sorted = Enum.sort_by(metas, &{&1.path, &1.method, &1.version})
    :persistent_term.put(@table, sorted)
  end

  defp discover do
    {:ok, modules} = :application.get_key(:cluster_scope, :modules)

    # ClusterScope's own operations live under ClusterScope.Operations; other
    # modules of the application (a host's, or test support) register.
    for module <- modules,
        String.starts_with?(Atom.to_string(module), "Elixir.ClusterScope.Operations."),
        Code.ensure_loaded?(module),
        function_exported?(module, :__cluster_scope_operation__, 0),
        {:ok, meta} <- [Operation.meta(module)],
        do: meta
  end

  # A reloaded module gets its metadata read again.
  defp fresh(%{module: module, md5: md5} = meta) do
    if Code.ensure_loaded?(module) and module.module_info(:md5) == md5 do
      meta
    else
      case GenServer.call(__MODULE__, {:refresh_module, module}) do
        {:ok, new} -> new
        {:error, _} -> meta
      end
    end
  end

  defp check_conflicts(meta, others) do
    Enum.find_value(others, :ok, fn other ->
      cond do
        other.name == meta.name and other.version == meta.version ->
          {:error, "#{meta.name} v#{meta.version} is already served by #{inspect(other.module)}"}

        other.method == meta.method and other.path == meta.path and other.version == meta.version ->
          {:error,
           "#{meta.method |> Atom.to_string() |> String.upcase()} #{meta.path} v#{meta.version} " <>
             "is already served by #{inspect(other.module)}"}

        true ->
          nil
      end
    end)
  end

  defp match_segments([], [], params), do: {:ok, params}

  defp match_segments([{:param, name} | rest], [value | values], params) when value != "",
    do: match_segments(rest, values, Map.put(params, Atom.to_string(name), value))

  defp match_segments([literal | rest], [literal | values], params),
    do: match_segments(rest, values, params)

  defp match_segments(_, _, _), do: :error
end
