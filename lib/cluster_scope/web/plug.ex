# Compiled only when Plug is loadable: without it the module does not exist
# and nothing refers to Plug (no warning).
if Code.ensure_loaded?(Plug) do
  defmodule ClusterScope.Web.Plug do
    @moduledoc """
    The dashboard and the HTTP API as a Plug, to mount in a host's router
    (Phoenix or plain Plug), the way LiveDashboard is mounted:

        forward "/cluster_scope", ClusterScope.Web.Plug, token: "...16+ bytes..."

    (in a `Plug.Router`: `forward "/cluster_scope", to: ClusterScope.Web.Plug,
    init_opts: [token: ...]`). It serves exactly what the embedded endpoint
    serves, under the prefix: the dashboard, `/api/v1/...` (every
    operation), `/api/openapi.json` and the live stream
    `/api/v1/stream`. Requests take the same path through
    `ClusterScope.Web.Handler`: tokens and scopes, admission, redaction,
    the same JSON and errors.

    Options: the `:http` options of `ClusterScope.Config` that make sense
    here (`token`, `read_token`, `read_only`, `max_body_bytes`,
    `allowed_origins`, `client_*`, `stream_*`, `max_stream_s`); a bad one
    raises at `init/1` naming it.

    Differences from the embedded endpoint:

      * `Host` is the host application's business (its router decided to
        route the request here), so it is not checked again; `Origin` is:
        the request's own origin (scheme, host and port of the conn) and
        `allowed_origins` are served;
      * the dashboard's `index.html` gets a `<base href="PREFIX/">`, so its
        relative links resolve under the prefix;
      * the stream is written with `Plug.Conn.send_chunked/2` and
        `chunk/2`; the client's close is noticed at the next write (a
        heartbeat at the latest).

    Cost: what the same request costs on the endpoint, plus reading the
    body (at most `max_body_bytes` + 1 bytes are read).
    """

    @behaviour Plug

    alias ClusterScope.Web.{Handler, Stream}

    @impl true
    def init(opts) do
      known = [
        :token,
        :read_token,
        :read_only,
        :max_body_bytes,
        :allowed_origins,
        :client_concurrency,
        :client_rate,
        :client_burst,
        :stream_per_client,
        :max_stream_s,
        :stream_heartbeat_ms
      ]

      case Enum.reject(Keyword.keys(opts), &(&1 in known)) do
        [] -> :ok
        bad -> raise ArgumentError, "ClusterScope.Web.Plug: unknown options #{inspect(bad)}"
      end

      case ClusterScope.Config.validate_http(opts) do
        {:ok, settings} ->
          Map.put(settings, :id, "plug")

        {:error, message} ->
          raise ArgumentError, "ClusterScope.Web.Plug: " <> message
      end
    end

    @impl true
    def call(conn, settings) do
      # Here rather than in init/1, which a Phoenix router runs at compile
      # time: the tokens are secrets of the running node (redacted from
      # every answer). A no-op once they are known.
      :ok = ClusterScope.Secrets.add_tokens([settings.token, settings.read_token])

      settings = %{
        settings
        | port: conn.port,
          allowed_origins: [own_origin(conn) | settings.allowed_origins]
      }

      {body, conn} = read_body(conn, settings.max_body_bytes)

      req = %{
        method: String.upcase(conn.method),
        path: "/" <> Enum.join(conn.path_info, "/"),
        query: conn.query_string,
        headers: conn.req_headers |> Map.new() |> Map.delete("host"),
        body: body,
        settings: settings,
        client: conn.remote_ip |> :inet.ntoa() |> List.to_string()
      }

      if req.method == "GET" and req.path == Stream.path() do
        stream(conn, req)
      else
        respond(conn, Handler.handle_request(req))
      end
    end

    defp read_body(conn, max) do
      case conn_api().read_body(conn, length: max + 1, read_length: min(max + 1, 1_000_000)) do
        {:ok, body, conn} -> {body, conn}
        # Past the limit: what was read is enough for the handler's 413.
        {:more, partial, conn} -> {partial, conn}
        {:error, _} -> {"", conn}
      end
    end

    defp own_origin(conn) do
      default =
        (conn.scheme == :http and conn.port == 80) or (conn.scheme == :https and conn.port == 443)

      port = if default, do: "", else: ":#{conn.port}"
      "#{conn.scheme}://#{conn.host}#{port}"
    end

    defp respond(conn, %{status: status, content_type: type, body: body, extra: extra}) do
      body =
        if String.starts_with?(type, "text/html"),
          do: with_base(IO.iodata_to_binary(body), conn.script_name),
          else: body

      headers =
        [{"content-type", type}, {"x-content-type-options", "nosniff"}] ++
          Enum.map(extra, fn {k, v} -> {to_string(k), to_string(v)} end)

      conn
      |> conn_api().merge_resp_headers(headers)
      |> conn_api().send_resp(status, body)
    end

    # Relative links of the dashboard resolve under the mount point.
    defp with_base(html, script_name) do
      base = ~s(<base href="#{Enum.map_join(script_name, "", &("/" <> &1))}/">)

      case :binary.match(html, "<head>") do
        {at, len} ->
          binary_part(html, 0, at + len) <>
            base <> binary_part(html, at + len, byte_size(html) - at - len)

        :nomatch ->
          html
      end
    end

    @conn_key {__MODULE__, :conn}

    # Plug.Conn is called through a variable: Plug is an optional
    # dependency (declared only when Hex is present), so a literal call
    # would be an xref warning in a build without the declaration.
    defp conn_api, do: :"Elixir.Plug.Conn"

    defp stream(conn, req) do
      Process.put(@conn_key, conn)

      transport = %{
        socket: nil,
        open: fn headers ->
          conn =
            Process.get(@conn_key)
            |> conn_api().merge_resp_headers(headers)
            |> conn_api().send_chunked(200)

          Process.put(@conn_key, conn)
          :ok
        end,
        write: fn binary ->
          case conn_api().chunk(Process.get(@conn_key), binary) do
            {:ok, conn} ->
              Process.put(@conn_key, conn)
              :ok

            {:error, _} ->
              :closed
          end
        end,
        finish: fn -> :ok end
      }

      result = Stream.serve_with(transport, req)
      conn = Process.delete(@conn_key)

      case result do
        {:sent, _} -> conn
        {:error, error} -> respond(conn, Handler.error_reply(error))
      end
    end
  end
end
