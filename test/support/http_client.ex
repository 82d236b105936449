defmodule ClusterScope.Test.HTTP do
  @moduledoc false
  # A small :httpc client for tests over real sockets.

  def request(method, url, opts \\ []) do
    headers =
      Enum.map(Keyword.get(opts, :headers, []), fn {k, v} -> {to_charlist(k), to_charlist(v)} end)

    url = to_charlist(url)

    request =
      case Keyword.fetch(opts, :body) do
        {:ok, body} ->
          type = Keyword.get(opts, :content_type, "application/json")
          {url, headers, to_charlist(type), body}

        :error ->
          {url, headers}
      end

    case :httpc.request(method, request, [timeout: 15_000], body_format: :binary) do
      {:ok, {{_, status, _}, resp_headers, body}} ->
        headers = Map.new(resp_headers, fn {k, v} -> {List.to_string(k), List.to_string(v)} end)

        decoded =
          if String.starts_with?(headers["content-type"] || "", "application/json"),
            do: decode(body),
            else: body

        {status, decoded, headers}

      {:error, reason} ->
        {:error, reason}
    end
  end

  @doc "A TCP port on 127.0.0.1 that was free a moment ago."
  def free_port do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    :ok = :gen_tcp.close(socket)
    port
  end

  def get(url, opts \\ []), do: request(:get, url, opts)
  def post(url, body, opts \\ []), do: request(:post, url, Keyword.put(opts, :body, body))

  defp decode(body) do
    {:ok, term} = ClusterScope.JSON.decode(body)
    term
  end
end
