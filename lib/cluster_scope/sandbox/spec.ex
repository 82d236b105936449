defmodule ClusterScope.Sandbox.Spec do
  @moduledoc """
  Validation of a sandbox definition (pure but for reading which modules are
  loaded and the configuration): every problem is named by its field, and
  nothing starts before the whole definition is valid.

  A child is `%{module:, function: "start_link", args: [], count: 1,
  restart: "permanent", shutdown: 5_000}` with string keys (from JSON: `args`
  is a JSON list, atoms as `{"$atom": "name"}` of existing atoms) or atom
  keys (from Elixir: `args` taken as terms). `module` must be loaded here and
  listed in the host's `:startable_modules` (default none): a child's start
  function runs with the given arguments. No atom is created from input.
  """

  alias ClusterScope.Config

  @strategies ~w(round_robin spread pinned least_loaded)a
  @restarts ~w(survivors none)a
  @child_restarts ~w(permanent transient temporary)a

  @doc "The placement strategies."
  @spec strategies() :: [atom()]
  def strategies, do: @strategies

  @doc """
  Checks `params` (`name`, `children`, `strategy`, `nodes`, `restart`) and
  returns the definition (without id) or `{:error, [%{field:, message:}]}`.
  """
  @spec definition(map()) :: {:ok, map()} | {:error, [map()]}
  def definition(params) do
    name = get(params, :name)
    strategy = atomish(get(params, :strategy) || :spread, @strategies)
    restart = atomish(get(params, :restart) || :survivors, @restarts)
    nodes = get(params, :nodes)

    errors =
      [
        name_error(name),
        if(strategy == :error,
          do: %{
            field: "strategy",
            message:
              "must be one of #{Enum.join(@strategies, ", ")}, got: #{inspect(get(params, :strategy))}"
          }
        ),
        if(restart == :error,
          do: %{
            field: "restart",
            message: "must be survivors or none, got: #{inspect(get(params, :restart))}"
          }
        ),
        if(strategy == :pinned and nodes in [nil, []],
          do: %{field: "nodes", message: "pinned placement needs the nodes to pin to"}
        )
      ]
      |> Enum.reject(&is_nil/1)

    {children, child_errors} = children(get(params, :children))
    errors = errors ++ child_errors
    total = Enum.reduce(children, 0, &(&1.count + &2))
    max = Config.get(:sandbox_max_processes)

    errors =
      if child_errors == [] and total > max,
        do:
          errors ++
            [
              %{
                field: "children",
                message:
                  "#{total} processes, more than sandbox_max_processes (#{max}) " <>
                    "the host allows (config :cluster_scope, sandbox_max_processes)"
              }
            ],
        else: errors

    case errors do
      [] ->
        {:ok,
         %{
           name: name,
           strategy: strategy,
           restart: restart,
           nodes: nodes,
           children: children,
           total: total
         }}

      _ ->
        {:error, errors}
    end
  end

  defp get(params, key), do: Map.get(params, key, Map.get(params, Atom.to_string(key)))

  defp atomish(value, allowed) when is_atom(value),
    do: if(value in allowed, do: value, else: :error)

  defp atomish(value, allowed) when is_binary(value),
    do: Enum.find(allowed, :error, &(Atom.to_string(&1) == value))

  defp atomish(_, _), do: :error

  defp name_error(name) when is_binary(name) do
    cond do
      name == "" or byte_size(name) > 64 ->
        %{field: "name", message: "must be 1 to 64 characters"}

      not Regex.match?(~r/\A[A-Za-z0-9_.\-]+\z/, name) ->
        %{field: "name", message: "only letters, digits, '_', '.' and '-'"}

      true ->
        nil
    end
  end

  defp name_error(other),
    do: %{field: "name", message: "must be a string, got: #{inspect(other, limit: 5)}"}

  defp children(list) when is_list(list) and list != [] and length(list) <= 100 do
    list
    |> Enum.with_index()
    |> Enum.reduce({[], []}, fn {child, i}, {ok, errors} ->
      case child(child, "children[#{i}]") do
        {:ok, c} -> {[c | ok], errors}
        {:error, e} -> {ok, errors ++ e}
      end
    end)
    |> then(fn {ok, errors} -> {Enum.reverse(ok), errors} end)
  end

  defp children(_),
    do: {[], [%{field: "children", message: "must be a list of 1 to 100 child specs"}]}

  defp child(child, path) when is_map(child) do
    json? = Enum.any?(Map.keys(child), &is_binary/1)
    module_in = get(child, :module)
    function_in = get(child, :function) || "start_link"
    args_in = get(child, :args) || []
    count = get(child, :count) || 1
    restart = atomish(get(child, :restart) || :permanent, @child_restarts)
    shutdown = get(child, :shutdown) || 5_000

    with {:ok, args} <- args(args_in, json?, path),
         {:ok, module} <- module(module_in, path),
         {:ok, function} <- exported(module, function_in, length(args), path),
         :ok <- int(count, 1, 1_000_000, path <> ".count"),
         :ok <- int(shutdown, 0, 3_600_000, path <> ".shutdown"),
         :ok <-
           if(restart == :error,
             do: err(path <> ".restart", "permanent, transient or temporary"),
             else: :ok
           ) do
      {:ok,
       %{
         module: module,
         function: function,
         args: args,
         count: count,
         restart: restart,
         shutdown: shutdown
       }}
    end
  end

  defp child(other, path),
    do: {:error, [%{field: path, message: "must be a map, got: #{inspect(other, limit: 5)}"}]}

  defp args(list, true, path) when is_list(list) do
    case ClusterScope.Procs.Terms.from_json(list, path <> ".args") do
      {:ok, args} -> {:ok, args}
      {:error, message} -> {:error, [%{field: path <> ".args", message: message}]}
    end
  end

  defp args(list, false, _path) when is_list(list), do: {:ok, list}
  defp args(_, _, path), do: err(path <> ".args", "must be a list")

  defp module(module, path) when is_atom(module) and module != nil do
    if Code.ensure_loaded?(module),
      do: {:ok, module},
      else: err(path <> ".module", "no loaded module #{inspect(module)} on #{node()}")
  end

  defp module(text, path) when is_binary(text) and byte_size(text) in 1..255 do
    with {:error, message} <- ClusterScope.Startable.resolve(text),
         do: err(path <> ".module", message)
  end

  defp module(other, path),
    do: err(path <> ".module", "must be a module name, got: #{inspect(other, limit: 5)}")

  defp exported(module, fun, arity, path) when is_atom(fun) do
    if function_exported?(module, fun, arity),
      do: {:ok, fun},
      else: err(path <> ".function", "#{inspect(module)}.#{fun}/#{arity} is not exported")
  end

  defp exported(module, text, arity, path) when is_binary(text) do
    exported(module, String.to_existing_atom(text), arity, path)
  rescue
    ArgumentError ->
      err(path <> ".function", "#{inspect(module)}.#{text}/#{arity} is not exported")
  end

  defp exported(_, other, _, path),
    do: err(path <> ".function", "must be a function name, got: #{inspect(other, limit: 5)}")

  defp int(v, min, max, _path) when is_integer(v) and v >= min and v <= max, do: :ok

  defp int(v, min, max, path),
    do: err(path, "must be an integer in #{min}..#{max}, got: #{inspect(v, limit: 5)}")

  defp err(field, message), do: {:error, [%{field: field, message: message}]}
end
