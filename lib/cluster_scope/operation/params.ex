defmodule ClusterScope.Operation.Params do
  @moduledoc """
  Schema-driven validation of operation parameters.

  An operation declares its parameters once in `rest_config/0`:

      %{name: :limit, type: :integer, required: false, default: 20, min: 1, max: 1000,
        location: :query, description: "how many"}

  and every surface (HTTP, CLI, Elixir API, an Arsenal host) gets the same
  checks. Input keys may be strings (HTTP, CLI) or atoms (Elixir callers);
  validated params are a map keyed by the declared atom names, so no atom is
  ever created from input.

  ## Types

    * `:string` - a binary; `:min_length`/`:max_length` (default max 10 000)
    * `:integer` - an integer or its decimal text; `:min`/`:max`, always
      within a signed 64-bit integer (an undeclared bound is the 64-bit one)
    * `:float` - a number or its text; `:min`/`:max`
    * `:boolean` - `true`/`false` or `"true"`/`"false"`/`"1"`/`"0"`
    * `:array` - a list, or comma-separated text; `:items` (element type),
      `:min_length`/`:max_length` (default max 1 000)
    * `:map` - a map (a JSON object in a body)
    * `:json` - any JSON value (decoded: maps with binary keys, lists,
      binaries, numbers, booleans, `nil`); text given on the command line
      is read as JSON
    * `:enum` - one of `:values`; when the declared values are atoms the
      input text is matched against them and the declared atom returned
    * `:node` - the name of a known node of the cluster (this node or a
      connected one), returned as the node atom
    * `:pid` - a process id in a `ClusterScope.ProcessRef` text form, returned
      as a `%ClusterScope.ProcessRef{}`

  Errors name every bad field: `{:error, [%{field: "limit", message: "..."}]}`.
  """

  alias ClusterScope.ProcessRef

  @types ~w(string integer float boolean array map json enum node pid)a
  @default_max_string 10_000
  @default_max_items 1_000
  @int64_min -0x8000000000000000
  @int64_max 0x7FFFFFFFFFFFFFFF

  @typedoc "A parameter declaration."
  @type spec :: %{
          required(:name) => atom(),
          required(:type) => atom(),
          optional(:required) => boolean(),
          optional(:location) => :path | :query | :body,
          optional(:description) => String.t(),
          optional(atom()) => term()
        }

  @typedoc "One bad field."
  @type field_error :: %{field: String.t(), message: String.t()}

  @doc "The supported parameter types."
  @spec types() :: [atom()]
  def types, do: @types

  @doc """
  Validates `params` against `specs`.

  Options: `:known_nodes` (default this node, the connected ones and, in simulated mode, the virtual ones),
  `:strict` (default `true`: unknown parameters are errors; keys starting
  with `_` are always ignored).
  """
  @spec validate([spec()], map(), keyword()) :: {:ok, map()} | {:error, [field_error()]}
  def validate(specs, params, opts \\ [])

  def validate(specs, params, opts) when is_list(specs) and is_map(params) do
    # In simulated mode the virtual nodes are known too (ClusterScope.Simulator).
    known_nodes =
      Keyword.get_lazy(opts, :known_nodes, fn ->
        [node() | Node.list(:connected)] ++ ClusterScope.Simulator.virtual_nodes()
      end)

    {valid, errors} =
      Enum.reduce(specs, {%{}, []}, fn spec, {valid, errors} ->
        case fetch(params, spec.name) do
          :error ->
            cond do
              Map.get(spec, :required, false) ->
                {valid, [error(spec, "is required") | errors]}

              Map.has_key?(spec, :default) ->
                {Map.put(valid, spec.name, spec.default), errors}

              true ->
                {valid, errors}
            end

          {:ok, value} ->
            case cast(spec, value, known_nodes) do
              {:ok, cast} -> {Map.put(valid, spec.name, cast), errors}
              {:error, message} -> {valid, [error(spec, message) | errors]}
            end
        end
      end)

    errors =
      if Keyword.get(opts, :strict, true),
        do: unknown_errors(specs, params) ++ errors,
        else: errors

    case errors do
      [] -> {:ok, valid}
      _ -> {:error, Enum.reverse(errors)}
    end
  end

  def validate(_specs, params, _opts) do
    {:error, [%{field: "params", message: "must be a map, got: #{inspect(params, limit: 5)}"}]}
  end

  @doc "Checks that a list of declarations is well formed (used at registration)."
  @spec check_specs([spec()]) :: :ok | {:error, String.t()}
  def check_specs(specs) when is_list(specs) do
    Enum.find_value(specs, :ok, fn
      %{name: name, type: type} = spec when is_atom(name) and type in @types ->
        if type == :enum and not is_list(Map.get(spec, :values)),
          do: {:error, "parameter #{name}: an enum needs :values"}

      other ->
        {:error,
         "bad parameter declaration #{inspect(other)}: needs :name (atom) and :type in #{inspect(@types)}"}
    end)
  end

  def check_specs(other), do: {:error, "parameters must be a list, got #{inspect(other)}"}

  defp fetch(params, name) do
    case Map.fetch(params, Atom.to_string(name)) do
      {:ok, value} -> {:ok, value}
      :error -> Map.fetch(params, name)
    end
  end

  defp unknown_errors(specs, params) do
    known = MapSet.new(specs, &Atom.to_string(&1.name))

    for key <- Map.keys(params),
        text = key_text(key),
        not String.starts_with?(text, "_"),
        not MapSet.member?(known, text) do
      names = specs |> Enum.map_join(", ", &Atom.to_string(&1.name))
      hint = if names == "", do: "this operation takes no parameters", else: "known: #{names}"

      %{
        field: String.slice(text, 0, 100),
        message: "is not a parameter of this operation (#{hint})"
      }
    end
  end

  defp key_text(key) when is_binary(key), do: key
  defp key_text(key) when is_atom(key), do: Atom.to_string(key)
  defp key_text(key), do: inspect(key, limit: 5)

  defp error(spec, message), do: %{field: Atom.to_string(spec.name), message: message}

  # -- casting ---------------------------------------------------------------

  defp cast(%{type: :string} = spec, value, _) when is_binary(value) do
    with :ok <- valid_utf8(value),
         do: check_length(spec, value, String.length(value), "characters", @default_max_string)
  end

  defp cast(%{type: :string}, value, _), do: type_error("a string", value)

  defp cast(%{type: :integer} = spec, value, _) when is_integer(value),
    do: check_range(int64(spec), value)

  defp cast(%{type: :integer} = spec, value, _) when is_binary(value) do
    case Integer.parse(String.trim(value)) do
      {int, ""} when byte_size(value) <= 40 -> check_range(int64(spec), int)
      _ -> type_error("an integer", value)
    end
  end

  defp cast(%{type: :integer}, value, _), do: type_error("an integer", value)

  defp cast(%{type: :float} = spec, value, _) when is_number(value),
    do: check_range(spec, value * 1.0)

  defp cast(%{type: :float} = spec, value, _) when is_binary(value) and byte_size(value) <= 40 do
    case Float.parse(String.trim(value)) do
      {float, ""} -> check_range(spec, float)
      _ -> type_error("a number", value)
    end
  end

  defp cast(%{type: :float}, value, _), do: type_error("a number", value)

  defp cast(%{type: :boolean}, value, _) when is_boolean(value), do: {:ok, value}
  defp cast(%{type: :boolean}, value, _) when value in ["true", "1"], do: {:ok, true}
  defp cast(%{type: :boolean}, value, _) when value in ["false", "0"], do: {:ok, false}
  defp cast(%{type: :boolean}, value, _), do: type_error("true or false", value)

  defp cast(%{type: :array} = spec, value, nodes) when is_binary(value) do
    items = if value == "", do: [], else: String.split(value, ",")
    cast(spec, items, nodes)
  end

  defp cast(%{type: :array} = spec, value, nodes) when is_list(value) do
    with {:ok, _} <- check_length(spec, value, safe_length(value), "items", @default_max_items) do
      cast_items(spec, value, nodes)
    end
  end

  defp cast(%{type: :array}, value, _), do: type_error("a list", value)

  defp cast(%{type: :map}, value, _) when is_map(value), do: {:ok, value}
  defp cast(%{type: :map}, value, _), do: type_error("an object", value)

  defp cast(%{type: :json}, value, _), do: {:ok, value}

  defp cast(%{type: :enum, values: values}, value, _) do
    text =
      if is_atom(value) and value not in [nil, true, false],
        do: Atom.to_string(value),
        else: value

    case Enum.find(values, &(enum_text(&1) == text)) do
      nil ->
        {:error,
         "must be one of #{Enum.map_join(values, ", ", &enum_text/1)}, got: #{short(value)}"}

      declared ->
        {:ok, declared}
    end
  end

  defp cast(%{type: :node}, value, nodes) when is_atom(value) do
    if value in nodes, do: {:ok, value}, else: {:error, unknown_node(value, nodes)}
  end

  defp cast(%{type: :node}, value, nodes) when is_binary(value) do
    case Enum.find(nodes, &(Atom.to_string(&1) == value)) do
      nil -> {:error, unknown_node(value, nodes)}
      node -> {:ok, node}
    end
  end

  defp cast(%{type: :node}, value, _), do: type_error("a node name", value)

  defp cast(%{type: :pid}, value, nodes) when is_pid(value) do
    ref = ProcessRef.from_pid(value)
    if ref.node in nodes, do: {:ok, ref}, else: {:error, unknown_node(ref.node, nodes)}
  end

  defp cast(%{type: :pid}, %ProcessRef{node: node} = ref, nodes) do
    if node in nodes, do: {:ok, ref}, else: {:error, unknown_node(node, nodes)}
  end

  defp cast(%{type: :pid}, value, nodes) when is_binary(value) and byte_size(value) <= 300 do
    ProcessRef.parse(value, nodes)
  end

  defp cast(%{type: :pid}, value, _), do: type_error("a process id", value)

  defp cast_items(spec, items, nodes) do
    item_spec =
      %{type: Map.get(spec, :items, :string)} |> Map.merge(Map.get(spec, :item_opts, %{}))

    items
    |> Enum.with_index()
    |> Enum.reduce_while({:ok, []}, fn {item, i}, {:ok, acc} ->
      case cast(item_spec, item, nodes) do
        {:ok, v} -> {:cont, {:ok, [v | acc]}}
        {:error, message} -> {:halt, {:error, "item #{i}: #{message}"}}
      end
    end)
    |> case do
      {:ok, acc} -> {:ok, Enum.reverse(acc)}
      error -> error
    end
  end

  # Every integer is a signed 64-bit one whatever its declaration says, so
  # no bignum reaches an ETS call, a NIF or the JSON encoder.
  defp int64(spec) do
    Map.merge(spec, %{
      min: max(Map.get(spec, :min, @int64_min), @int64_min),
      max: min(Map.get(spec, :max, @int64_max), @int64_max)
    })
  end

  defp check_range(spec, value) do
    cond do
      Map.has_key?(spec, :min) and value < spec.min ->
        {:error, "must be at least #{spec.min}, got: #{value}"}

      Map.has_key?(spec, :max) and value > spec.max ->
        {:error, "must be at most #{spec.max}, got: #{value}"}

      true ->
        {:ok, value}
    end
  end

  defp check_length(spec, value, length, unit, default_max) do
    min = Map.get(spec, :min_length, 0)
    max = Map.get(spec, :max_length, default_max)

    cond do
      length < min -> {:error, "must have at least #{min} #{unit}, got #{length}"}
      length > max -> {:error, "must have at most #{max} #{unit}, got #{length}"}
      true -> {:ok, value}
    end
  end

  defp valid_utf8(value) do
    if String.valid?(value), do: :ok, else: {:error, "must be valid UTF-8"}
  end

  defp safe_length(list) do
    length(list)
  rescue
    ArgumentError -> -1
  end

  defp enum_text(v) when is_atom(v), do: Atom.to_string(v)
  defp enum_text(v), do: v

  defp unknown_node(value, nodes) do
    known = nodes |> Enum.take(10) |> Enum.map_join(", ", &Atom.to_string/1)
    "must be a known node of the cluster (#{known}), got: #{short(value)}"
  end

  defp type_error(expected, value), do: {:error, "must be #{expected}, got: #{short(value)}"}

  defp short(value) when is_binary(value) do
    text = if String.valid?(value), do: value, else: "(invalid UTF-8)"
    inspect(String.slice(text, 0, 60))
  end

  defp short(value), do: inspect(value, limit: 5, printable_limit: 60)
end
