defmodule ClusterScope.Redact do
  @moduledoc """
  Secrets never leave a node, wherever they sit in a term.

  A process's state, a traced argument, a message in a mailbox, a crash
  reason or a command line can hold the distribution cookie (and with it the
  power to run code on every node), the endpoint's bearer tokens or a
  password. Every term ClusterScope shows goes through `term/2` first:

    * **secret values**: the node's cookie, the cookie set for each node it
      knows (`erlang:set_cookie/2`) and the endpoint's tokens are replaced
      by `"[REDACTED]"` wherever they appear: as an atom, a binary or a
      charlist, equal or inside a longer text (`-setcookie SECRET`). A
      secret shorter than #{6} bytes is replaced only where a value equals
      it, so a short test cookie does not blank out every word;
    * **secret keys**: the value under a key whose name contains one of the
      configured `redact_keys` (`password`, `secret`, `token`, ...; without
      case) is replaced, for map entries and two-element tuples (keyword
      lists, proplists, `{:password, _}` fields).

  ## Cost

  One walk of the term (every atom and text is looked at once) and one
  `:binary.match/2` per binary against a compiled pattern of the secrets: a
  state of 1 MiB takes a few milliseconds. Terms are not copied where
  nothing is replaced beyond what the walk rebuilds.

  This module calls only OTP (no Elixir library at run time), so it can be
  loaded onto a node that runs no ClusterScope, like `ClusterScope.Agent.Processes.Rows`.
  """

  @redacted "[REDACTED]"
  @min_substring 6

  @typedoc "What to redact: compiled on the node that redacts."
  @type rules :: %{
          exact: [binary()],
          pattern: :binary.cp() | nil,
          keys: [binary()]
        }

  @doc "The replacement text."
  @spec redacted() :: binary()
  def redacted, do: @redacted

  @doc """
  The rules of this node: its cookies and `extra_secrets` as values,
  `keys` (lower-case names) as keys.
  """
  @spec rules([binary()], [binary()]) :: rules()
  def rules(keys, extra_secrets \\ []) do
    secrets = :lists.usort(cookies() ++ :lists.filter(&is_binary/1, extra_secrets))
    long = :lists.filter(fn s -> byte_size(s) >= @min_substring end, secrets)
    keys = :lists.filter(fn k -> is_binary(k) and k != "" end, keys)

    %{
      exact: secrets,
      pattern: if(long == [], do: nil, else: :binary.compile_pattern(long)),
      keys: :lists.map(&lower_ascii/1, keys)
    }
  end

  @doc """
  Every cookie this node holds: its own and those set for other nodes
  (connected now, earlier or never, from `auth`'s own table), as binaries.
  """
  @spec cookies() :: [binary()]
  def cookies do
    own =
      case :erlang.get_cookie() do
        :nocookie -> []
        cookie -> [cookie]
      end

    # erlang:get_cookie/1 is a call to auth for each node: read auth's own
    # table of per-node cookies instead, and ask per node only without it.
    per_node =
      case auth_cookies() do
        :unreadable ->
          nodes = [:erlang.node() | :erlang.nodes([:visible, :hidden, :known])]
          :lists.map(&safe_cookie/1, nodes)

        cookies ->
          cookies
      end

    cookies = :lists.usort(own ++ per_node) -- [:nocookie, :""]
    :lists.map(&:erlang.atom_to_binary(&1, :utf8), cookies)
  end

  # Cookies set with erlang:set_cookie/2 for nodes never connected are in
  # none of nodes/1's lists: auth keeps them all in a protected (readable)
  # table of its own named `cookies`. Finding it walks every table, so the
  # table is remembered (and found again if auth ever restarts).
  defp auth_cookies do
    case auth_table() do
      nil ->
        :unreadable

      table ->
        :lists.filtermap(
          fn
            {_node, cookie} when is_atom(cookie) -> {true, cookie}
            _ -> false
          end,
          :ets.tab2list(table)
        )
    end
  catch
    _, _ -> :unreadable
  end

  # Remembered per auth process, a table or nil (an OTP without that table
  # is not searched again).
  defp auth_table do
    auth = :erlang.whereis(:auth)

    case :persistent_term.get({__MODULE__, :auth_table}, nil) do
      _ when not is_pid(auth) -> nil
      {^auth, table} -> table
      _ -> find_auth_table(auth)
    end
  end

  defp find_auth_table(auth) do
    found =
      :lists.search(
        fn table -> :ets.info(table, :owner) == auth and :ets.info(table, :name) == :cookies end,
        :ets.all()
      )

    table =
      case found do
        {:value, table} -> table
        false -> nil
      end

    :persistent_term.put({__MODULE__, :auth_table}, {auth, table})
    table
  end

  defp safe_cookie(node) do
    :erlang.get_cookie(node)
  catch
    _, _ -> :nocookie
  end

  @doc "The term with every secret value and every value under a secret key replaced."
  @spec term(term(), rules()) :: term()
  def term(term, %{exact: [], keys: []}), do: term
  def term(term, rules), do: walk(term, rules)

  @doc "A text with every secret in it replaced."
  @spec text(binary(), rules()) :: binary()
  def text(text, rules) when is_binary(text), do: binary(text, rules)

  defp walk(atom, rules) when is_atom(atom) do
    if atom in [nil, true, false] do
      atom
    else
      text = :erlang.atom_to_binary(atom, :utf8)

      case binary(text, rules) do
        ^text -> atom
        _ -> @redacted
      end
    end
  end

  defp walk(bin, rules) when is_binary(bin), do: binary(bin, rules)

  defp walk({key, _value} = pair, rules) do
    if secret_key?(key, rules), do: {key, @redacted}, else: tuple(pair, rules)
  end

  defp walk(tuple, rules) when is_tuple(tuple), do: tuple(tuple, rules)

  defp walk(map, rules) when is_map(map) do
    :maps.fold(
      fn key, value, acc ->
        value = if secret_key?(key, rules), do: @redacted, else: walk(value, rules)
        :maps.put(walk(key, rules), value, acc)
      end,
      %{},
      map
    )
  end

  defp walk([], _rules), do: []

  defp walk(list, rules) when is_list(list) do
    case charlist_text(list) do
      {:ok, text} ->
        case binary(text, rules) do
          ^text -> list
          other -> :unicode.characters_to_list(other)
        end

      :error ->
        list(list, rules)
    end
  end

  defp walk(other, _rules), do: other

  defp list([head | tail], rules) when is_list(tail), do: [walk(head, rules) | list(tail, rules)]
  defp list([head | tail], rules), do: [walk(head, rules) | walk(tail, rules)]
  defp list([], _rules), do: []

  defp tuple(tuple, rules) do
    tuple |> :erlang.tuple_to_list() |> list(rules) |> :erlang.list_to_tuple()
  end

  defp binary(bin, %{exact: exact, pattern: pattern}) do
    cond do
      :lists.member(bin, exact) -> @redacted
      pattern != nil and :binary.match(bin, pattern) != :nomatch -> replace(bin, pattern)
      true -> bin
    end
  end

  defp replace(bin, pattern) do
    # Cheap check first; the replacement rebuilds the binary.
    if :erlang.byte_size(bin) > 0,
      do: :binary.replace(bin, pattern, @redacted, [:global]),
      else: bin
  end

  defp secret_key?(_key, %{keys: []}), do: false

  defp secret_key?(key, %{keys: keys}) do
    case key_text(key) do
      nil ->
        false

      text ->
        lower = lower_ascii(text)
        :lists.any(fn k -> :binary.match(lower, k) != :nomatch end, keys)
    end
  end

  # Key names are compared in ASCII lower case: any binary works, valid
  # UTF-8 or not (a binary UUID or a hash as a map key must not crash the
  # redaction, and with it the read of a state or a trace event).
  defp lower_ascii(bin), do: :binary.list_to_bin(lower_ascii(bin, []))

  defp lower_ascii(<<c, rest::binary>>, acc) when c >= ?A and c <= ?Z,
    do: lower_ascii(rest, [c + 32 | acc])

  defp lower_ascii(<<c, rest::binary>>, acc), do: lower_ascii(rest, [c | acc])
  defp lower_ascii(<<>>, acc), do: :lists.reverse(acc)

  defp key_text(key) when is_atom(key) and key not in [nil, true, false],
    do: :erlang.atom_to_binary(key, :utf8)

  defp key_text(key) when is_binary(key) and byte_size(key) <= 256, do: key

  defp key_text(key) when is_list(key) and key != [] do
    case charlist_text(key) do
      {:ok, text} when byte_size(text) <= 256 -> text
      _ -> nil
    end
  end

  defp key_text(_), do: nil

  # A proper list of printable code points as UTF-8, or :error.
  defp charlist_text(list) do
    if :io_lib.printable_unicode_list(list) do
      case :unicode.characters_to_binary(list) do
        text when is_binary(text) -> {:ok, text}
        _ -> :error
      end
    else
      :error
    end
  end
end
