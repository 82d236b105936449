defmodule ClusterScope.JSON do
  @moduledoc """
  JSON encoding and decoding in ClusterScope's Rust core, with hard limits on
  size and nesting.

      iex> ClusterScope.JSON.encode(%{"name" => "node-1", "up" => true})
      {:ok, ~s({"name":"node-1","up":true})}

      iex> ClusterScope.JSON.decode(~s({"load": [0.5, 1], "note": null}))
      {:ok, %{"load" => [0.5, 1], "note" => nil}}

  ## Elixir to JSON (`encode/2`)

  | Elixir                                    | JSON                                        |
  | ----------------------------------------- | ------------------------------------------- |
  | `nil`                                     | `null`                                      |
  | `true`, `false`                           | `true`, `false`                             |
  | any other atom                            | string: `:ok` → `"ok"`, `Foo` → `"Elixir.Foo"` |
  | binary (UTF-8)                            | string                                      |
  | integer from -2^63 to 2^64 - 1            | number: `42`                                |
  | float                                     | number, shortest exact form: `1.0`, `0.1`, `1e+300` |
  | proper list                               | array (so a charlist is an array of integers) |
  | map with binary or atom keys              | object; atom keys become strings           |
  | struct                                    | object, `"__struct__"` key included: convert structs yourself first |

  Anything else is refused with an `:unsupported` error naming the term and
  where it is (for example `cannot encode a tuple as JSON, at
  $.peers[2]`): tuples, pids, references, ports, functions, improper
  lists, bitstrings that are not whole bytes, map keys that are not binaries
  or atoms, and maps where an atom key and a binary key have the same text
  (`%{:a => 1, "a" => 2}`). A binary that is not UTF-8 is an
  `:invalid_utf8` error and an integer out of the range above an
  `:integer_out_of_range` error. Map entries are written in the map's
  iteration order.

  ## JSON to Elixir (`decode/2`)

  | JSON                                  | Elixir                                          |
  | ------------------------------------- | ----------------------------------------------- |
  | `null`                                | `nil`                                           |
  | `true`, `false`                       | `true`, `false`                                 |
  | number without fraction or exponent   | integer; beyond -2^63 .. 2^64 - 1: `:integer_out_of_range` |
  | number with a fraction or exponent    | float: `1.0` → `1.0`, `1e2` → `100.0`; beyond the float range: `:non_finite_float` |
  | string                                | binary                                          |
  | array                                 | list                                            |
  | object                                | map with **binary** keys                        |

  Object keys are never turned into atoms, so decoding untrusted text cannot
  fill the atom table. When an object repeats a key, the last value wins.
  The input must be exactly one JSON value (RFC 8259, UTF-8), optionally
  surrounded by whitespace: no comments, trailing commas, `NaN` or byte order
  mark, and nothing after the value.

  ## Limits

  Both functions take these options:

    * `:max_bytes` - the largest JSON text accepted (decode) or produced
      (encode), in bytes. Default: #{8 * 1024 * 1024} (8 MiB). Decoding checks
      it before reading the input; encoding stops as soon as the output would
      pass it, without building the rest.
    * `:max_depth` - the deepest nesting of arrays and objects (lists and
      maps when encoding): `[]` has depth 1, `[[1]]` depth 2, a scalar
      depth 0. Default: 64; at most 100. Checked while parsing or walking, so
      deep input is refused before it can recurse any further.

  An invalid option raises `ArgumentError`.

  ## Errors

  `{:error, {code, detail}}`, the one error shape of every NIF (see
  `ClusterScope.Native`), where `detail` says what is wrong and where (line
  and column in the input, or the path in the term being encoded), and `code`
  is one of:

    * `:syntax` - not JSON (includes trailing data after the value)
    * `:invalid_utf8` - the input, or a binary being encoded, is not UTF-8
    * `:too_large` - over `:max_bytes`
    * `:too_deep` - nested deeper than `:max_depth`
    * `:integer_out_of_range` - an integer outside -2^63 .. 2^64 - 1
    * `:non_finite_float` - a number beyond the 64-bit float range
    * `:unsupported` - a term with no JSON form (see above)
    * `:invalid_limits` - limits outside what the core accepts (only seen
      when calling `ClusterScope.Native` directly: the options are checked
      here first)

  When the Rust core is not loaded (see `ClusterScope.Native`), both return
  `{:error, :native_unavailable}`: the host application keeps running.

  ## Cost, and why it is safe on a production node

  The work is done in Rust, in time linear in the size of the text, and is
  bounded by the limits: at most `:max_bytes` of text and `:max_depth` levels
  of recursion (far below any scheduler's stack), whatever the input.

    * Small inputs run directly on the caller's scheduler: a decode of up to
      16 KiB of JSON, or an encode of a term estimated at up to 16 KiB of
      JSON, takes under a millisecond, the budget of a normal NIF (measured
      on a small VM: 0.1-0.35 ms for 16 KiB of typical JSON, 0.5 ms for the
      worst shape).
    * Larger ones run on a dirty CPU scheduler, so a multi-megabyte document
      never holds up the processes of a normal scheduler.
    * Choosing costs next to nothing: `byte_size/1` for decode; for encode a
      walk of the term that stops after about 16 KiB worth of it, in plain
      Erlang code that the scheduler can preempt.
    * Memory is bounded by the limits. Decoding holds the input, a Rust copy
      of its values and the resulting term: at worst (an array of one-digit
      numbers) about 24 bytes per byte of input, so some 200 MB for an 8 MiB
      document; lower `:max_bytes` for untrusted input where that matters.
      Encoding holds a Rust copy of the term, refused as soon as its text is
      certain to pass `:max_bytes`, and the output.
    * No atom is ever created from input, and a panic in the core raises an
      `ErlangError` in the caller instead of taking the node down.
  """

  alias ClusterScope.Native

  @default_max_bytes 8 * 1024 * 1024
  @default_max_depth 64
  # Mirrors cluster_scope_core::json::MAX_DEPTH_CEILING.
  @max_depth_ceiling 100
  # Above this (bytes of JSON, read or estimated), work goes to a dirty CPU
  # scheduler. 16 KiB rather than 64 KiB: measured on the 2-vCPU build VM,
  # the normal-scheduler NIFs take 0.3-0.6 ms for 64 KiB of typical JSON but
  # 1.5 ms for the worst shape (a decode of `[[],[],...]`), over the 1 ms a
  # normal NIF may take; at 16 KiB that worst case is about 0.5 ms and
  # typical JSON 0.1-0.35 ms. A dirty call costs a few microseconds more,
  # nothing next to the work at this size.
  @dirty_threshold 16 * 1024

  @typedoc "Options of `encode/2`, `encode!/2` and `decode/2`."
  @type option :: {:max_bytes, pos_integer()} | {:max_depth, non_neg_integer()}

  @typedoc "Machine-readable error codes."
  @type code ::
          :syntax
          | :invalid_utf8
          | :too_large
          | :too_deep
          | :integer_out_of_range
          | :non_finite_float
          | :unsupported
          | :invalid_limits

  @typedoc "Why encoding or decoding failed."
  @type error :: {code(), String.t()} | :native_unavailable

  @typedoc "A decoded JSON value."
  @type json ::
          nil
          | boolean()
          | integer()
          | float()
          | String.t()
          | [json()]
          | %{optional(String.t()) => json()}

  @doc """
  Encodes `term` as compact JSON text (no whitespace).

  See the module documentation for the mapping, the options and the errors.

      iex> ClusterScope.JSON.encode([1, 2.5, nil, :up, "é"])
      {:ok, ~s([1,2.5,null,"up","é"])}

      iex> ClusterScope.JSON.encode(%{pid: {:a, :b}})
      {:error, {:unsupported, "cannot encode a tuple as JSON, at $.pid"}}
  """
  @spec encode(term(), [option()]) :: {:ok, String.t()} | {:error, error()}
  def encode(term, opts \\ []) do
    {max_bytes, max_depth} = limits!(opts)

    if dirty?(:encode, term) do
      Native.json_encode_dirty(term, max_bytes, max_depth)
    else
      Native.json_encode(term, max_bytes, max_depth)
    end
  end

  @doc """
  Like `encode/2`, but returns the JSON text or raises.

  Raises `ArgumentError` with the error's message when `term` cannot be
  encoded, and `RuntimeError` when the Rust core is not loaded.

      iex> ClusterScope.JSON.encode!(%{"ok" => true})
      ~s({"ok":true})
  """
  @spec encode!(term(), [option()]) :: String.t()
  def encode!(term, opts \\ []) do
    case encode(term, opts) do
      {:ok, json} ->
        json

      {:error, {_code, detail}} ->
        raise ArgumentError, detail

      {:error, :native_unavailable} ->
        raise "ClusterScope.JSON needs ClusterScope's native core, which is not loaded " <>
                "(see ClusterScope.Native.status/0)"
    end
  end

  @doc """
  Decodes one JSON value from `json`.

  See the module documentation for the mapping, the options and the errors.

      iex> ClusterScope.JSON.decode(~s([1, 1.0, "a", {"b": []}]))
      {:ok, [1, 1.0, "a", %{"b" => []}]}

      iex> ClusterScope.JSON.decode("[1,\\n 2,]")
      {:error, {:syntax, "invalid JSON: trailing comma at line 2 column 4"}}
  """
  @spec decode(binary(), [option()]) :: {:ok, json()} | {:error, error()}
  def decode(json, opts \\ []) when is_binary(json) do
    {max_bytes, max_depth} = limits!(opts)

    if dirty?(:decode, json) do
      Native.json_decode_dirty(json, max_bytes, max_depth)
    else
      Native.json_decode(json, max_bytes, max_depth)
    end
  end

  defp limits!(opts) do
    opts = Keyword.validate!(opts, max_bytes: @default_max_bytes, max_depth: @default_max_depth)
    max_bytes = opts[:max_bytes]
    max_depth = opts[:max_depth]

    unless is_integer(max_bytes) and max_bytes > 0 do
      raise ArgumentError, ":max_bytes must be a positive integer, got: #{inspect(max_bytes)}"
    end

    unless is_integer(max_depth) and max_depth in 0..@max_depth_ceiling do
      raise ArgumentError,
            ":max_depth must be an integer from 0 to #{@max_depth_ceiling}, " <>
              "got: #{inspect(max_depth)}"
    end

    {max_bytes, max_depth}
  end

  # Public for the tests only: whether `encode/2` or `decode/2` sends this
  # input to a dirty CPU scheduler.
  @doc false
  @spec dirty?(:encode | :decode, term()) :: boolean()
  def dirty?(:decode, json) when is_binary(json), do: byte_size(json) > @dirty_threshold
  def dirty?(:encode, term), do: budget(term, @dirty_threshold) < 0

  # For encode, `budget/2` estimates the term's JSON size against
  # @dirty_threshold.
  #
  # Not :erlang.external_size/1, though it is fast (measured on OTP 25: about
  # 0.4 ms per MB of external format, 15 ms for a list of a million small
  # maps): it always walks the whole term, in one BIF call that cannot be
  # preempted, so the bigger the term, the longer it blocks the normal
  # scheduler just to decide to leave it. This walk stops as soon as the
  # estimate passes the threshold, so it visits at most a few thousand terms
  # whatever the size of `term` (measured: about 60 us on that same list),
  # and it is plain Erlang code, preemptible like any other.
  #
  # `budget/2` returns what is left of `left` after `term`'s estimated JSON
  # size: negative once the threshold is passed, and then it returns at once.
  defp budget(_term, left) when left < 0, do: left
  defp budget(term, left) when is_binary(term), do: left - byte_size(term) - 2
  defp budget([], left), do: left - 2
  defp budget([head | tail], left), do: budget(tail, budget(head, left - 1))

  defp budget(term, left) when is_map(term) do
    # Every entry costs a few bytes at least, so the guard bounds the list
    # built here to left / 4 entries.
    if map_size(term) * 4 > left do
      -1
    else
      entries_budget(:maps.to_list(term), left - 2)
    end
  end

  defp budget(term, left) when is_atom(term), do: left - 6
  defp budget(_number_or_unsupported, left), do: left - 8

  defp entries_budget(_entries, left) when left < 0, do: left
  defp entries_budget([], left), do: left

  defp entries_budget([{key, value} | rest], left),
    do: entries_budget(rest, budget(value, budget(key, left - 2)))
end
