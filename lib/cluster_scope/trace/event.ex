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
  """

  alias ClusterScope.ProcessRef

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

  @doc "The event of a trace message."
  @spec from_trace(tuple(), integer()) :: t()
  def from_trace(message, ts_us) do
    pid = elem(message, 1)

    base = %{
      ts_us: ts_us,
      node: Atom.to_string(node()),
      pid: who(pid)
    }

    Map.merge(base, details(strip_ts(message)))
  end

  @doc """
  The stored form of a kept trace message. A small message is stored as it
  came (about a microsecond to encode) and formatted when it is read: the
  tracer then gets through a burst fast enough to switch tracing off in
  time. A large one (over 8 KiB in external format) is formatted now, under the
  `inspect/2` limits, so the ring never holds big terms.
  """
  @spec store(tuple(), integer()) :: binary()
  def store(message, ts_us) do
    # external_size counts binaries too (flat_size does not see off-heap ones).
    if :erlang.external_size(message) <= 8_192,
      do: :erlang.term_to_binary({:raw, ts_us, message}),
      else: :erlang.term_to_binary({:event, from_trace(message, ts_us)})
  end

  @doc """
  The event of a stored form, or `nil` if it is not one. Read on the node
  that stored it, whose atom table already holds every atom in it: decoding
  is `:safe` and creates none.
  """
  @spec load(binary()) :: t() | nil
  def load(binary) do
    case :erlang.binary_to_term(binary, [:safe]) do
      {:raw, ts_us, message} -> from_trace(message, ts_us)
      {:event, event} -> event
      _ -> nil
    end
  rescue
    ArgumentError -> nil
  end

  defp strip_ts(message) when elem(message, 0) == :trace_ts,
    do: message |> Tuple.delete_at(tuple_size(message) - 1) |> put_elem(0, :trace)

  defp strip_ts(message), do: message

  defp details({:trace, _, :call, {m, f, args}}),
    do: %{kind: "call", mfa: "#{inspect(m)}.#{f}/#{length(args)}", args: show(args)}

  defp details({:trace, _, :call, {m, f, args}, _info}),
    do: %{kind: "call", mfa: "#{inspect(m)}.#{f}/#{length(args)}", args: show(args)}

  defp details({:trace, _, :return_from, {m, f, a}, result}),
    do: %{kind: "return", mfa: "#{inspect(m)}.#{f}/#{a}", result: show(result)}

  defp details({:trace, _, :exception_from, {m, f, a}, {class, value}}),
    do: %{kind: "exception", mfa: "#{inspect(m)}.#{f}/#{a}", result: show({class, value})}

  defp details({:trace, _, :send, msg, to}),
    do: %{kind: "send", message: show(msg), to: who(to)}

  defp details({:trace, _, :send_to_non_existing_process, msg, to}),
    do: %{kind: "send_to_dead", message: show(msg), to: who(to)}

  defp details({:trace, _, :receive, msg}), do: %{kind: "receive", message: show(msg)}

  defp details(other),
    do: %{kind: other |> elem(2) |> to_string(), data: show(Tuple.delete_at(other, 0))}

  defp who(pid) when is_pid(pid), do: ProcessRef.to_string(pid)
  defp who({name, node}) when is_atom(name) and is_atom(node), do: "#{inspect(name)} on #{node}"
  defp who(other), do: inspect(other)

  defp show(term), do: inspect(term, @inspect_opts)
end
