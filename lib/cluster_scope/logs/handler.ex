defmodule ClusterScope.Logs.Handler do
  @moduledoc """
  The `:logger` handler behind `ClusterScope.Logs`: runs in the process that
  logs, so it does the least it can (format once with a character limit,
  one atomic increment, one insert, one delete) and never raises.
  """

  @doc false
  def log(%{level: level, msg: msg, meta: meta}, %{config: config}) do
    %{table: table, counter: counter, max_events: max, max_message_bytes: bytes} = config
    seq = :atomics.add_get(counter, 1, 1)

    {module, function} =
      case meta do
        # Elixir's modules as Elixir writes them, Erlang's bare.
        %{mfa: {m, f, a}} -> {m |> inspect() |> String.trim_leading(":"), "#{f}/#{a}"}
        _ -> {nil, nil}
      end

    pid = with %{pid: pid} when is_pid(pid) <- meta, do: ClusterScope.ProcessRef.to_string(pid)

    :ets.insert(
      table,
      {seq, Map.get(meta, :time, :logger.timestamp()), level, module, function,
       Map.get(meta, :line), if(is_binary(pid), do: pid), message(msg, meta, bytes)}
    )

    if seq > max, do: :ets.delete(table, seq - max)
    :ok
  catch
    # A malformed event, or the table gone with its owner: never let :logger
    # remove the handler (or the logging process see an error) for it.
    _, _ -> :ok
  end

  def log(_event, _config), do: :ok

  defp message({:string, chardata}, _meta, bytes), do: cut(chardata, bytes)

  defp message({:report, report}, %{report_cb: cb}, bytes) when is_function(cb, 1) do
    {format, args} = cb.(report)
    format(format, args, bytes)
  end

  defp message({:report, report}, %{report_cb: cb}, bytes) when is_function(cb, 2) do
    cut(cb.(report, %{depth: 30, chars_limit: bytes, single_line: true}), bytes)
  end

  defp message({:report, report}, _meta, bytes) do
    {format, args} = :logger.format_report(report)
    format(format, args, bytes)
  end

  defp message({format, args}, _meta, bytes), do: format(format, args, bytes)

  defp format(format, args, bytes),
    do: cut(:io_lib.format(format, args, chars_limit: bytes), bytes)

  defp cut(chardata, bytes) do
    binary =
      case :unicode.characters_to_binary(chardata) do
        binary when is_binary(binary) -> binary
        _ -> inspect(chardata, limit: 50, printable_limit: bytes)
      end

    if byte_size(binary) <= bytes,
      do: valid(binary, 0),
      else: valid(binary_part(binary, 0, bytes), 3)
  end

  # A cut can split a UTF-8 sequence: drop its partial last character (at most
  # 3 bytes). Bytes invalid elsewhere (a binary logged as a string) are shown
  # escaped, so the answer is always valid text.
  defp valid(binary, trims) do
    cond do
      String.valid?(binary) ->
        binary

      trims > 0 and byte_size(binary) > 0 ->
        valid(binary_part(binary, 0, byte_size(binary) - 1), trims - 1)

      true ->
        inspect(binary, limit: :infinity)
    end
  end
end
