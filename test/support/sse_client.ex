defmodule ClusterScope.Test.SSE do
  @moduledoc false
  # A Server-Sent Events client for tests over a real socket: sends the
  # request, parses the head, decodes the chunked body as it arrives and
  # splits it into frames, as a browser's fetch() reader would.

  defstruct [:socket, :status, :headers, buffer: "", body: "", chunked: true, closed: false]

  def open(port, path, headers \\ [], opts \\ []) do
    {:ok, socket} =
      :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, packet: :raw] ++ opts)

    extra = Enum.map_join(headers, "", fn {k, v} -> "#{k}: #{v}\r\n" end)

    :ok =
      :gen_tcp.send(
        socket,
        "GET #{path} HTTP/1.1\r\nHost: 127.0.0.1:#{port}\r\nAccept: text/event-stream\r\n#{extra}\r\n"
      )

    read_head(%__MODULE__{socket: socket}, System.monotonic_time(:millisecond) + 10_000)
  end

  defp read_head(conn, deadline) do
    case :binary.split(conn.buffer, "\r\n\r\n") do
      [head, rest] ->
        [status_line | lines] = String.split(head, "\r\n")
        [_, code | _] = String.split(status_line, " ")

        headers =
          Map.new(lines, fn line ->
            [k, v] = String.split(line, ":", parts: 2)
            {String.downcase(String.trim(k)), String.trim(v)}
          end)

        conn = %{
          conn
          | status: String.to_integer(code),
            headers: headers,
            buffer: rest,
            chunked: headers["transfer-encoding"] == "chunked"
        }

        {:ok, conn}

      [_] ->
        case recv(conn, deadline) do
          {:ok, conn} -> read_head(conn, deadline)
          other -> other
        end
    end
  end

  defp recv(conn, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    case :gen_tcp.recv(conn.socket, 0, wait) do
      {:ok, data} -> {:ok, %{conn | buffer: conn.buffer <> data}}
      {:error, :timeout} -> {:timeout, conn}
      {:error, _} -> {:closed, %{conn | closed: true}}
    end
  end

  @doc "The whole body of a non-stream answer (an error): JSON decoded."
  def json_body(conn) do
    length = String.to_integer(conn.headers["content-length"] || "0")
    conn = fill(conn, length, System.monotonic_time(:millisecond) + 5_000)
    {:ok, term} = ClusterScope.JSON.decode(binary_part(conn.buffer, 0, length))
    term
  end

  defp fill(conn, length, deadline) do
    if byte_size(conn.buffer) >= length do
      conn
    else
      {:ok, conn} = recv(conn, deadline)
      fill(conn, length, deadline)
    end
  end

  @doc """
  The next frame within `timeout` ms: `{:ok, frame, conn}` (frame: map of
  `id`, `event`, `data`, `comments`, `retry`), `{:timeout, conn}` or
  `{:closed, conn}` when the server ended the stream.
  """
  def next(conn, timeout \\ 5_000) do
    next_until(conn, System.monotonic_time(:millisecond) + timeout)
  end

  defp next_until(conn, deadline) do
    conn = decode_chunks(conn)

    case :binary.split(conn.body, "\n\n") do
      [frame, rest] ->
        {:ok, parse_frame(frame), %{conn | body: rest}}

      [_] ->
        if conn.closed do
          {:closed, conn}
        else
          case recv(conn, deadline) do
            {:ok, conn} -> next_until(conn, deadline)
            {:timeout, conn} -> {:timeout, conn}
            {:closed, conn} -> next_until(%{conn | closed: true}, deadline)
          end
        end
    end
  end

  # Moves complete chunks from the raw buffer to the body; the last chunk
  # (size 0) marks the end.
  defp decode_chunks(%{chunked: false} = conn),
    do: %{conn | body: conn.body <> conn.buffer, buffer: ""}

  defp decode_chunks(conn) do
    case :binary.split(conn.buffer, "\r\n") do
      [size_line, rest] ->
        size = size_line |> String.split(";") |> hd() |> String.trim() |> String.to_integer(16)

        cond do
          size == 0 ->
            %{conn | closed: true, buffer: ""}

          byte_size(rest) >= size + 2 ->
            <<data::binary-size(size), "\r\n", rest::binary>> = rest
            decode_chunks(%{conn | body: conn.body <> data, buffer: rest})

          true ->
            conn
        end

      [_] ->
        conn
    end
  end

  defp parse_frame(text) do
    text
    |> String.split("\n")
    |> Enum.reduce(%{comments: []}, fn
      ":" <> comment, acc ->
        Map.update!(acc, :comments, &(&1 ++ [String.trim(comment)]))

      line, acc ->
        case String.split(line, ":", parts: 2) do
          [field, value] ->
            value = String.replace_prefix(value, " ", "")

            case field do
              "data" -> Map.update(acc, :data, value, &(&1 <> "\n" <> value))
              "id" -> Map.put(acc, :id, value)
              "event" -> Map.put(acc, :event, value)
              "retry" -> Map.put(acc, :retry, value)
              _ -> acc
            end

          _ ->
            acc
        end
    end)
  end

  @doc "Frames until one satisfies `fun` (returned), within `timeout` ms in all."
  def await(conn, fun, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    await_until(conn, fun, deadline, [])
  end

  defp await_until(conn, fun, deadline, seen) do
    left = deadline - System.monotonic_time(:millisecond)

    if left <= 0 do
      {:timeout, conn, Enum.reverse(seen)}
    else
      case next(conn, left) do
        {:ok, frame, conn} ->
          if fun.(frame),
            do: {:ok, frame, conn, Enum.reverse(seen)},
            else: await_until(conn, fun, deadline, [frame | seen])

        {other, conn} ->
          {other, conn, Enum.reverse(seen)}
      end
    end
  end

  def data(%{data: data}) do
    {:ok, term} = ClusterScope.JSON.decode(data)
    term
  end

  def close(conn), do: :gen_tcp.close(conn.socket)
end
