defmodule ClusterScope.Trace.Event do
  @moduledoc """
  A trace message made into an event, on the node where it happened.

  Events carry their node and their process in the one text form
  (`"0.123.0@node"`), a time (`ts_us`, the VM's system time in
  microseconds, comparable across the nodes of one host and as good as the
  hosts' clocks across hosts), a `kind` (`call`, `return`, `exception`,
  `send`, `send_to_dead`, `receive`) and their data printed with `inspect/2`
  under limits (at most 20 elements per collection and 512 characters per
  string), so an event is a few hundred bytes whatever the terms. Only kept
  events are formatted, and only when read (`store/2`, `load/1`):
  formatting is the expensive part of a trace event.

  ## Secrets

  Arguments, return values, exceptions and messages are redacted when they
  are formatted, on the traced node, with that node's rules
  (`ClusterScope.Secrets.rules/0`: its cookies, its endpoints' tokens, the
  values under `redact_keys`), before `inspect/2`: an event never holds a
  secret, whoever reads it. The term is first cut to what `inspect/2` shows
  (21 items per collection, at most 5,000 terms in all), so the cost of
  redaction is bounded like the formatting; texts are matched whole before
  they are cut, so a secret is never shown in part.
  """

  alias ClusterScope.{ProcessRef, Redact, Secrets}

  # One item more than inspect's limit, so it still prints "...".
  @cut_items 21
  @cut_budget 5_000
  # A charlist is kept (and redacted as text) up to this many characters:
  # a secret starting among the shown ones is always matched whole.
  @text_window 4_096

  @inspect_opts [limit: 20, printable_limit: 512, width: :infinity, charlists: :as_lists]

  @typedoc "An event."
  @type t :: %{
          required(:ts_us) => integer(),
          required(:node) => String.t(),
          required(:pid) => String.t(),
          required(:kind) => String.t(),
          optional(atom()) => String.t() | nil
        }

  @doc "The pid of a trace message (the traced process)."
  @spec pid(tuple()) :: pid() | port() | term()
  def pid(message), do: elem(message, 1)

  @doc """
  The time of a trace message in microseconds: its timestamp when it has
  one (`trace_ts`), else now.
  """
  @spec ts_us(tuple()) :: integer()
  def ts_us(message) when elem(message, 0) == :trace_ts do
    case elem(message, tuple_size(message) - 1) do
      {mega, sec, micro} -> (mega * 1_000_000 + sec) * 1_000_000 + micro
      _ -> System.os_time(:microsecond)
    end
  end

  def ts_us(_message), do: System.os_time(:microsecond)

  @doc """
  The event of a trace message, redacted with `rules` (default: this node's
  `ClusterScope.Secrets.rules/0`, read now).
  """
  @spec from_trace(tuple(), integer(), Redact.rules() | nil) :: t()
  def from_trace(message, ts_us, rules \\ nil) do
    rules = rules || Secrets.rules()
    pid = elem(message, 1)

    base = %{
      ts_us: ts_us,
      node: Atom.to_string(node()),
      pid: who(pid)
    }

    Map.merge(base, details(strip_ts(message), rules))
  end

  @doc """
  The stored form of a kept trace message. A small message is stored as it
  came (about a microsecond to encode) and formatted when it is read: the
  tracer then gets through a burst fast enough to switch tracing off in
  time. A large one (over 8 KiB in external format) is formatted now, under the
  `inspect/2` limits, so the ring never holds big terms.
  """
  @spec store(tuple(), integer(), Redact.rules() | nil) :: binary()
  def store(message, ts_us, rules \\ nil) do
    # external_size counts binaries too (flat_size does not see off-heap ones).
    if :erlang.external_size(message) <= 8_192,
      do: :erlang.term_to_binary({:raw, ts_us, message}),
      else: :erlang.term_to_binary({:event, from_trace(message, ts_us, rules)})
  end

  @doc """
  The event of a stored form, or `nil` if it is not one. Read on the node
  that stored it, whose atom table already holds every atom in it: decoding
  is `:safe` and creates none.
  """
  @spec load(binary(), Redact.rules() | nil) :: t() | nil
  def load(binary, rules \\ nil) do
    case :erlang.binary_to_term(binary, [:safe]) do
      {:raw, ts_us, message} -> from_trace(message, ts_us, rules)
      {:event, event} -> event
      _ -> nil
    end
  rescue
    ArgumentError -> nil
  end

  defp strip_ts(message) when elem(message, 0) == :trace_ts,
    do: message |> Tuple.delete_at(tuple_size(message) - 1) |> put_elem(0, :trace)

  defp strip_ts(message), do: message

  defp details({:trace, _, :call, {m, f, args}}, rules),
    do: %{kind: "call", mfa: "#{inspect(m)}.#{f}/#{length(args)}", args: show(args, rules)}

  defp details({:trace, _, :call, {m, f, args}, _info}, rules),
    do: %{kind: "call", mfa: "#{inspect(m)}.#{f}/#{length(args)}", args: show(args, rules)}

  defp details({:trace, _, :return_from, {m, f, a}, result}, rules),
    do: %{kind: "return", mfa: "#{inspect(m)}.#{f}/#{a}", result: show(result, rules)}

  defp details({:trace, _, :exception_from, {m, f, a}, {class, value}}, rules),
    do: %{kind: "exception", mfa: "#{inspect(m)}.#{f}/#{a}", result: show({class, value}, rules)}

  defp details({:trace, _, :send, msg, to}, rules),
    do: %{kind: "send", message: show(msg, rules), to: who(to)}

  defp details({:trace, _, :send_to_non_existing_process, msg, to}, rules),
    do: %{kind: "send_to_dead", message: show(msg, rules), to: who(to)}

  defp details({:trace, _, :receive, msg}, rules),
    do: %{kind: "receive", message: show(msg, rules)}

  defp details(other, rules),
    do: %{kind: other |> elem(2) |> to_string(), data: show(Tuple.delete_at(other, 0), rules)}

  defp who(pid) when is_pid(pid), do: ProcessRef.to_string(pid)
  defp who({name, node}) when is_atom(name) and is_atom(node), do: "#{inspect(name)} on #{node}"
  defp who(other), do: inspect(other)

  defp show(term, rules) do
    {cut, _budget} = cut(term, @cut_budget)
    cut |> Redact.term(rules) |> inspect(@inspect_opts)
  end

  # -- cutting a term to what inspect/2 shows ------------------------------------

  defp cut(_term, budget) when budget <= 0, do: {:..., 0}
  defp cut(list, budget) when is_list(list) and list != [], do: cut_list(list, budget)

  defp cut(tuple, budget) when is_tuple(tuple) do
    {items, budget} =
      tuple
      |> Tuple.to_list()
      |> Enum.take(@cut_items)
      |> cut_items(budget - 1)

    {List.to_tuple(items), budget}
  end

  defp cut(map, budget) when is_map(map) and not is_struct(map) do
    {pairs, budget} =
      map
      |> :maps.iterator()
      |> take_pairs(@cut_items, [])
      |> Enum.flat_map(fn {k, v} -> [k, v] end)
      |> cut_items(budget - 1)

    {pairs |> Enum.chunk_every(2) |> Map.new(fn [k, v] -> {k, v} end), budget}
  end

  defp cut(%_{} = struct, budget) do
    # Structs are printed by their Inspect implementation: keep them whole
    # (bounded by the budget) unless they are large.
    if :erts_debug.flat_size(struct) <= @cut_budget,
      do: {struct, budget - 1},
      else: cut(Map.from_struct(struct), budget)
  end

  # Binaries stay whole: Redact matches them in C, inspect cuts them.
  defp cut(other, budget), do: {other, budget - 1}

  defp cut_list(list, budget) do
    {head, rest} = take(list, @text_window, [])

    if head != [] and (rest == [] or is_list(rest)) and :io_lib.printable_unicode_list(head) do
      {head, budget - 1}
    else
      {items, more} =
        if length(head) > @cut_items, do: {Enum.take(head, @cut_items), true}, else: {head, false}

      {items, budget} = cut_items(items, budget - 1)

      cond do
        more or rest == [] or is_list(rest) ->
          {items, budget}

        true ->
          # An improper list: keep its tail.
          {tail, budget} = cut(rest, budget)
          {improper(items, tail), budget}
      end
    end
  end

  defp improper(items, tail), do: List.foldr(items, tail, &[&1 | &2])

  defp take([h | t], n, acc) when n > 0, do: take(t, n - 1, [h | acc])
  defp take(rest, _n, acc), do: {:lists.reverse(acc), rest}

  defp take_pairs(_iter, 0, acc), do: :lists.reverse(acc)

  defp take_pairs(iter, n, acc) do
    case :maps.next(iter) do
      {k, v, next} -> take_pairs(next, n - 1, [{k, v} | acc])
      :none -> :lists.reverse(acc)
    end
  end

  defp cut_items(items, budget) do
    {items, budget} =
      Enum.reduce(items, {[], budget}, fn item, {acc, budget} ->
        {item, budget} = cut(item, budget)
        {[item | acc], budget}
      end)

    {:lists.reverse(items), budget}
  end
end
