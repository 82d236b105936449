defmodule ClusterScope.Procs.Terms do
  @moduledoc """
  The mapping between JSON and Erlang terms used to send messages to
  processes and to show their state and replies.

  ## JSON to term (`from_json/1`, for `SendMessage`)

  | JSON                                  | term                                     |
  | ------------------------------------- | ---------------------------------------- |
  | `null`, `true`, `false`               | `nil`, `true`, `false`                   |
  | number                                | integer or float                         |
  | string                                | binary (an Elixir string)                |
  | array                                 | list                                     |
  | `{"$atom": "ok"}`                     | the atom `:ok`, only if it already exists |
  | `{"$tuple": [a, b]}`                  | the tuple `{a, b}`                       |
  | `{"$pid": "0.123.0@node"}`            | that process (a known node)              |
  | `{"$charlist": "abc"}`                | `~c"abc"`                                |
  | any other object                      | map with binary keys                     |

  So `{"$tuple": [{"$atom": "ping"}, 1]}` is `{:ping, 1}`. An atom that
  does not exist is refused (never created from input), with the path of
  the bad value, for example `message.$tuple[0]: :pingg is not an existing
  atom`.

  ## Term to JSON (`to_json/1`, for states and replies)

  The same forms the other way: atoms other than `nil`, `true`, `false`
  become `{"$atom": ..}`, tuples `{"$tuple": [..]}`, pids `{"$pid": ..}`,
  maps with keys that are not strings `{"$map": [[key, value], ..]}`
  (a struct is such a map: its fields and its `__struct__` key, so
  `%MapSet{}` or a `DynamicSupervisor` state render like any map),
  binaries that are not UTF-8 `{"$binary": base64}`, and references,
  ports and funs `{"$term": "#Reference<...>"}`. Nesting deeper than
  #{20} levels or lists and maps longer than #{200} elements are cut, with
  `{"$truncated": elements_left_out}` in their place, so a huge state
  cannot produce a huge response; a binary over 4 KiB becomes
  `{"$truncated_binary": size, "head": first_256_bytes}`.
  """

  alias ClusterScope.ProcessRef

  @max_depth 20
  @max_items 200
  @max_binary 4_096

  @doc "A term from decoded JSON (see the module doc). Errors name the path."
  @spec from_json(term(), String.t()) :: {:ok, term()} | {:error, String.t()}
  def from_json(value, path \\ "message")

  def from_json(value, _path)
      when is_binary(value) or is_number(value) or is_boolean(value) or is_nil(value),
      do: {:ok, value}

  def from_json(list, path) when is_list(list) do
    list
    |> Enum.with_index()
    |> Enum.reduce_while({:ok, []}, fn {item, i}, {:ok, acc} ->
      case from_json(item, "#{path}[#{i}]") do
        {:ok, term} -> {:cont, {:ok, [term | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, acc} -> {:ok, Enum.reverse(acc)}
      error -> error
    end
  end

  def from_json(%{"$atom" => name} = map, path) when map_size(map) == 1 and is_binary(name) do
    {:ok, String.to_existing_atom(name)}
  rescue
    ArgumentError -> {:error, "#{path}: :#{name} is not an existing atom"}
  end

  def from_json(%{"$tuple" => items} = map, path) when map_size(map) == 1 and is_list(items) do
    with {:ok, list} <- from_json(items, path <> ".$tuple"), do: {:ok, List.to_tuple(list)}
  end

  def from_json(%{"$charlist" => text} = map, _path) when map_size(map) == 1 and is_binary(text),
    do: {:ok, String.to_charlist(text)}

  def from_json(%{"$pid" => text} = map, path) when map_size(map) == 1 and is_binary(text) do
    with {:ok, ref} <- ProcessRef.parse(text),
         {:ok, pid} <- ClusterScope.Procs.Control.pid(ref) do
      {:ok, pid}
    else
      {:error, message} when is_binary(message) -> {:error, "#{path}: #{message}"}
      {:error, reason} -> {:error, "#{path}: #{inspect(reason)}"}
    end
  end

  def from_json(map, path) when is_map(map) do
    Enum.reduce_while(map, {:ok, %{}}, fn
      {key, value}, {:ok, acc} when is_binary(key) ->
        case from_json(value, "#{path}.#{key}") do
          {:ok, term} -> {:cont, {:ok, Map.put(acc, key, term)}}
          error -> {:halt, error}
        end

      {key, _}, _ ->
        {:halt, {:error, "#{path}: object keys must be strings, got #{inspect(key)}"}}
    end)
  end

  def from_json(other, path),
    do: {:error, "#{path}: #{inspect(other, limit: 5)} is not a JSON value"}

  @doc "A JSON-ready form of any term (see the module doc)."
  @spec to_json(term()) :: term()
  def to_json(term), do: to_json(term, 0)

  defp to_json(_term, depth) when depth > @max_depth, do: %{"$truncated" => 1}
  defp to_json(term, _) when is_nil(term) or is_boolean(term) or is_number(term), do: term
  defp to_json(atom, _) when is_atom(atom), do: %{"$atom" => Atom.to_string(atom)}

  defp to_json(bin, _) when byte_size(bin) > @max_binary do
    %{"$truncated_binary" => byte_size(bin), "head" => to_json(binary_part(bin, 0, 256), 0)}
  end

  defp to_json(bin, _) when is_binary(bin) do
    if String.valid?(bin), do: bin, else: %{"$binary" => Base.encode64(bin)}
  end

  defp to_json(pid, _) when is_pid(pid), do: %{"$pid" => ProcessRef.to_string(pid)}

  defp to_json(tuple, depth) when is_tuple(tuple),
    do: %{"$tuple" => tuple |> Tuple.to_list() |> items(depth)}

  defp to_json(list, depth) when is_list(list) do
    if proper?(list),
      do: items(list, depth),
      else: %{"$term" => inspect(list, limit: @max_items)}
  end

  # Through :maps, never Enum: a struct is a map that need not be
  # enumerable (DynamicSupervisor's state), or enumerates something other
  # than its fields (MapSet). A struct's fields, `__struct__` included,
  # come out like any other map with atom keys.
  defp to_json(map, depth) when is_map(map) do
    # At most @max_items pairs are taken, however large the map.
    pairs = take_pairs(:maps.next(:maps.iterator(map)), @max_items, [])

    if map_size(map) <= @max_items and Enum.all?(pairs, fn {k, _} -> is_binary(k) end) do
      :maps.from_list(Enum.map(pairs, fn {k, v} -> {k, to_json(v, depth + 1)} end))
    else
      kept = Enum.map(pairs, fn {k, v} -> [k, v] end)
      %{"$map" => items(kept, depth) ++ truncated(map_size(map) - @max_items)}
    end
  end

  defp to_json(other, _), do: %{"$term" => inspect(other)}

  defp items(list, depth) do
    {kept, rest} = Enum.split(list, @max_items)
    Enum.map(kept, &to_json(&1, depth + 1)) ++ truncated(length(rest))
  end

  defp take_pairs(:none, _n, acc), do: Enum.reverse(acc)
  defp take_pairs(_iter, 0, acc), do: Enum.reverse(acc)
  defp take_pairs({k, v, iter}, n, acc), do: take_pairs(:maps.next(iter), n - 1, [{k, v} | acc])

  defp truncated(n) when n > 0, do: [%{"$truncated" => n}]
  defp truncated(_), do: []

  defp proper?([]), do: true
  defp proper?([_ | tail]), do: proper?(tail)
  defp proper?(_), do: false
end
