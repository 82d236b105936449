defmodule ClusterScope.Web.Handler do
  @moduledoc """
  The httpd module behind `ClusterScope.Web.Endpoint`: routes a request to
  the OpenAPI document, an operation, or a static file, and answers JSON.

  Every response is JSON (static files excepted): on success
  `{"data": ..., "metadata": {...}}`, on failure
  `{"error": {code, message, details, cluster, remediation}, "metadata": {...}}`
  with the status of `ClusterScope.Error.http_status/1`.

  Parameters come from the path, the query string and, for requests with a
  body, a JSON object (`Content-Type: application/json`); path parameters win
  over query ones, query over body. `Accept-Version: N` selects a version of
  an operation when several are served on one route.
  """

  require Record

  alias ClusterScope.{Error, JSON}
  alias ClusterScope.Operation.{Registry, Runner}
  alias ClusterScope.Web.{Admission, Authority, Endpoint, OpenAPI, Static}

  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))
  Record.defrecordp(:init_data, Record.extract(:init_data, from_lib: "inets/include/httpd.hrl"))

  @doc false
  # httpd's module callback.
  def unquote(:do)(mod_data) do
    # httpd writes the head and the body separately: without nodelay the
    # second write waits for a delayed ACK, 40 ms a request.
    _ = :inet.setopts(mod(mod_data, :socket), nodelay: true)
    request = request(mod_data)

    case stream(mod_data, request) do
      {:sent, bytes} ->
        {:proceed, [{:response, {:already_sent, 200, bytes}}]}

      :not_stream ->
        response = safe_handle(request)
        {:proceed, [{:response, {:response, headers(response), response.body}}]}

      response ->
        {:proceed, [{:response, {:response, headers(response), response.body}}]}
    end
  end

  # GET /api/v1/stream: Server-Sent Events written on the connection by
  # ClusterScope.Web.Stream, after the same Host and Origin checks.
  defp stream(mod_data, %{method: "GET"} = req) do
    if req.path == ClusterScope.Web.Stream.path() do
      with :ok <- Authority.check_host(req),
           :ok <- Authority.check_origin(req),
           :ok <- utf8_uri(req),
           {:sent, _} = sent <- ClusterScope.Web.Stream.serve(mod_data, req) do
        sent
      else
        {:error, %Error{} = error} -> error_response(error, nil)
      end
    else
      :not_stream
    end
  rescue
    e ->
      require Logger
      Logger.error("ClusterScope stream failed: " <> Exception.format(:error, e, __STACKTRACE__))
      error_response(Error.new(:internal, "the stream failed"), nil)
  end

  defp stream(_mod_data, _req), do: :not_stream

  @doc false
  # The whole request -> response path for another server (ClusterScope.Web.Plug):
  # `req` as built by request/1, the answer as `%{status, content_type, body, extra}`.
  def handle_request(req), do: safe_handle(req)

  @doc false
  # The JSON answer of an error raised before any operation ran.
  def error_reply(%Error{} = error), do: error_response(error, nil)

  defp safe_handle(request) do
    handle(request)
  rescue
    e ->
      require Logger

      Logger.error(
        "ClusterScope HTTP handler crashed: " <> Exception.format(:error, e, __STACKTRACE__)
      )

      message = ClusterScope.Redact.text(Exception.message(e), ClusterScope.Secrets.rules())

      error_response(
        Error.new(:internal, "the HTTP handler failed: #{String.slice(message, 0, 500)}"),
        nil
      )
  end

  defp request(mod_data) do
    settings = Endpoint.settings(server_name(mod(mod_data, :config_db)))
    {path, query} = split_uri(List.to_string(mod(mod_data, :request_uri)))

    headers =
      Map.new(mod(mod_data, :parsed_header), fn {k, v} ->
        {k |> List.to_string() |> String.downcase(), :erlang.list_to_binary(v)}
      end)

    %{
      method: mod(mod_data, :method) |> List.to_string() |> String.upcase(),
      path: path,
      query: query,
      headers: headers,
      body: body(mod(mod_data, :entity_body)),
      settings: settings,
      client: client(mod(mod_data, :init_data))
    }
  end

  # The peer address: the key of a client's limits.
  defp client(init_data(peername: {_port, address})) when is_list(address),
    do: List.to_string(address)

  defp client(_), do: "unknown"

  defp server_name(config_db) do
    case :ets.lookup(config_db, :server_name) do
      [{:server_name, name}] -> List.to_string(name)
      _ -> nil
    end
  end

  defp body(body) when is_list(body), do: :erlang.list_to_binary(body)
  defp body(body) when is_binary(body), do: body
  defp body(_), do: ""

  defp split_uri(uri) do
    case String.split(uri, "?", parts: 2) do
      [path, query] -> {path, query}
      [path] -> {path, ""}
    end
  end

  # -- routing -----------------------------------------------------------------

  # Host and Origin first: after DNS rebinding, a page of another site talks
  # to this endpoint with its own name in Host; nothing it asks is served.
  defp handle(req) do
    with :ok <- Authority.check_host(req),
         :ok <- Authority.check_origin(req),
         :ok <- utf8_uri(req) do
      route_request(req)
    else
      {:error, %Error{} = error} -> error_response(error, nil)
    end
  end

  # Raw bytes that are not UTF-8 in the request line would be echoed into a
  # JSON error that cannot be encoded.
  defp utf8_uri(req) do
    if String.valid?(req.path) and String.valid?(req.query),
      do: :ok,
      else: {:error, invalid("uri", "is not UTF-8")}
  end

  defp route_request(%{body: body, settings: %{max_body_bytes: max}})
       when byte_size(body) > max do
    error_response(
      Error.new(
        :payload_too_large,
        "the body is #{byte_size(body)} bytes, over the limit of #{max}"
      ),
      nil
    )
  end

  defp route_request(%{method: "GET", path: "/api/openapi.json"} = req) do
    case Authority.authorize(:read, req) do
      :ok -> json_response(200, OpenAPI.document(read_only: req.settings.read_only))
      {:error, error} -> error_response(error, nil)
    end
  end

  defp route_request(%{path: "/api/" <> _} = req) do
    with {:ok, method} <- method(req.method),
         {:ok, version} <- version(req.headers),
         {:ok, meta, path_params} <- route(method, req, version),
         :ok <- authorize(meta.scope, req),
         {:ok, params} <- params(req, path_params),
         :ok <- admit(meta, params, req) do
      try do
        context = %{surface: :http, read_only: req.settings.read_only}

        case Runner.run(meta, params, context: context) do
          {:ok, data, metadata} -> json_response(200, %{data: data, metadata: metadata})
          {:error, error, metadata} -> error_response(error, metadata)
        end
      after
        Admission.leave()
      end
    else
      {:error, %Error{} = error} -> error_response(error, nil)
    end
  end

  defp route_request(%{method: method} = req) when method in ["GET", "HEAD"] do
    case Static.fetch(req.path) do
      {:ok, content_type, body} ->
        %{
          status: 200,
          content_type: content_type,
          body: body,
          extra: [{~c"cache-control", ~c"no-cache"}]
        }

      :error ->
        error_response(
          Error.new(:not_found, "no such page: #{String.slice(req.path, 0, 200)}"),
          nil
        )
    end
  end

  defp route_request(req) do
    error_response(
      Error.new(
        :method_not_allowed,
        "#{String.slice(req.method, 0, 20)} is not allowed on #{String.slice(req.path, 0, 200)}",
        details: %{allowed: ["GET", "HEAD"]}
      ),
      nil
    )
  end

  # -- admission ---------------------------------------------------------------

  # A refused token costs the client a request of its rate, so tokens cannot
  # be guessed faster than client_rate per second (past it: 429).
  defp authorize(scope, req) do
    case Authority.authorize(scope, req) do
      {:error, %Error{code: :unauthorized}} = refused ->
        case Admission.enter(req.settings.id, :general, req.client, limits(req)) do
          :ok ->
            Admission.leave()
            refused

          {:reject, why, retry_after} ->
            too_many(why, :general, retry_after)
        end

      other ->
        other
    end
  end

  defp limits(req), do: Map.take(req.settings, [:client_concurrency, :client_rate, :client_burst])

  defp too_many(why, lane, retry_after) do
    {:error,
     Error.new(:too_many_requests, "refused: #{why}",
       details: %{lane: lane, retry_after_s: retry_after}
     )}
  end

  defp admit(meta, params, req) do
    lane = lane(meta, params)

    case Admission.enter(req.settings.id, lane, req.client, limits(req)) do
      :ok -> :ok
      {:reject, why, retry_after} -> too_many(why, lane, retry_after)
    end
  end

  defp lane(%{scope: :control}, _params), do: :control
  defp lane(%{name: "cluster_health"}, _params), do: :health

  # Before validation: any window_ms that is not plainly zero or absent
  # takes the slow lane (" 30000" is a 30 s window once trimmed); a value
  # of another type is refused by validation anyway.
  defp lane(_meta, %{"window_ms" => ms}) when is_binary(ms) do
    if String.trim(ms) in ["", "0"], do: :general, else: :slow
  end

  defp lane(_meta, %{"window_ms" => ms}) when is_integer(ms) and ms > 0, do: :slow
  defp lane(_meta, _params), do: :general

  defp method(text) do
    case text do
      "GET" ->
        {:ok, :get}

      "POST" ->
        {:ok, :post}

      "PUT" ->
        {:ok, :put}

      "PATCH" ->
        {:ok, :patch}

      "DELETE" ->
        {:ok, :delete}

      other ->
        {:error,
         Error.new(:method_not_allowed, "method #{String.slice(other, 0, 20)} is not supported")}
    end
  end

  defp version(%{"accept-version" => text}) do
    case Integer.parse(text) do
      {v, ""} when v > 0 -> {:ok, v}
      _ -> {:error, invalid("accept-version", "must be a positive integer")}
    end
  end

  defp version(_), do: {:ok, :latest}

  defp route(method, req, version) do
    segments = req.path |> String.split("/", trim: true) |> Enum.map(&URI.decode/1)

    if Enum.all?(segments, &String.valid?/1),
      do: match_route(method, req, version, segments),
      else: {:error, invalid("path", "is not UTF-8 once decoded")}
  end

  defp match_route(method, req, version, segments) do
    case Registry.match(method, segments, version) do
      {:ok, meta, params} ->
        if req.settings.read_only and meta.scope == :control,
          do: not_found(req),
          else: {:ok, meta, params}

      {:error, {:method_not_allowed, allowed}} ->
        # A read-only endpoint does not reveal the control routes it hides.
        case served_methods(allowed, segments, version, req.settings.read_only) do
          [] ->
            not_found(req)

          served ->
            {:error,
             Error.new(
               :method_not_allowed,
               "#{req.method} is not allowed on #{String.slice(req.path, 0, 200)}",
               details: %{allowed: Enum.map(served, &(&1 |> Atom.to_string() |> String.upcase()))}
             )}
        end

      {:error, :not_found} ->
        not_found(req)
    end
  end

  defp served_methods(methods, _segments, _version, false), do: methods

  defp served_methods(methods, segments, version, true) do
    Enum.filter(methods, fn method ->
      match?(
        {:ok, %{scope: scope}, _} when scope != :control,
        Registry.match(method, segments, version)
      )
    end)
  end

  defp not_found(req) do
    {:error,
     Error.new(:not_found, "no operation at #{req.method} #{String.slice(req.path, 0, 200)}")}
  end

  # -- parameters --------------------------------------------------------------

  defp params(req, path_params) do
    with {:ok, query} <- query_params(req.query),
         {:ok, body} <- body_params(req) do
      {:ok, body |> Map.merge(query) |> Map.merge(path_params)}
    end
  end

  defp query_params(""), do: {:ok, %{}}

  # Names and values must be UTF-8: they are echoed in errors, which are
  # JSON (a name like %FF turned a 400 into a 500).
  defp query_params(query) do
    params = URI.decode_query(query)

    if Enum.all?(params, fn {k, v} -> String.valid?(k) and String.valid?(v) end),
      do: {:ok, params},
      else: {:error, invalid("query", "is not UTF-8 once decoded")}
  rescue
    _ -> {:error, invalid("query", "is not a valid query string")}
  end

  defp body_params(%{body: ""}), do: {:ok, %{}}

  defp body_params(%{body: body, headers: headers, settings: settings}) do
    content_type = Map.get(headers, "content-type", "")

    if String.starts_with?(content_type, "application/json") do
      case JSON.decode(body, max_bytes: settings.max_body_bytes) do
        {:ok, %{} = object} ->
          {:ok, object}

        {:ok, _} ->
          {:error, invalid("body", "must be a JSON object")}

        {:error, {code, message}} ->
          {:error, invalid("body", "is not valid JSON (#{code}): #{message}")}

        {:error, :native_unavailable} ->
          {:error, Error.normalize(:native_unavailable)}
      end
    else
      {:error, invalid("body", "must be sent with Content-Type: application/json")}
    end
  end

  defp invalid(field, message) do
    Error.new(:invalid_params, "#{field} #{message}",
      details: %{fields: [%{field: field, message: message}]}
    )
  end

  # -- responses ---------------------------------------------------------------

  # An error the handler answers itself (before or without running an
  # operation: Host, Origin, authority, routing, admission) names no node:
  # the cluster's names are what a read token protects, and such a client
  # may have none.
  defp error_response(%Error{} = error, nil) do
    error_response(%{error | cluster: %{}}, %{partial: false, node_errors: []})
  end

  defp error_response(%Error{} = error, metadata) do
    response =
      json_response(Error.http_status(error.code), %{
        error: Error.to_map(error),
        metadata: metadata
      })

    %{response | extra: error_headers(error) ++ response.extra}
  end

  defp error_headers(%Error{code: :method_not_allowed, details: %{allowed: allowed}}),
    do: [{~c"allow", String.to_charlist(Enum.join(allowed, ", "))}]

  defp error_headers(%Error{code: :too_many_requests, details: %{retry_after_s: s}}),
    do: [{~c"retry-after", Integer.to_charlist(s)}]

  defp error_headers(%Error{code: :unauthorized}),
    do: [{~c"www-authenticate", ~c"Bearer realm=\"cluster_scope\""}]

  defp error_headers(_), do: []

  defp json_response(status, payload) do
    case JSON.encode(payload) do
      {:ok, body} ->
        %{status: status, content_type: "application/json", body: body, extra: []}

      {:error, reason} ->
        # The core could not encode (or is not loaded): say so in JSON we can
        # always write by hand.
        message = inspect(reason, limit: 10, printable_limit: 300)
        code = if reason == :native_unavailable, do: "native_unavailable", else: "internal"
        status = if reason == :native_unavailable, do: 503, else: 500

        body =
          ~s({"error":{"code":"#{code}","message":#{hand_json_string("could not encode the response: " <> message)}}})

        %{status: status, content_type: "application/json", body: body, extra: []}
    end
  end

  defp hand_json_string(text) do
    escaped =
      for <<c <- text>>, into: "" do
        cond do
          c == ?" -> "\\\""
          c == ?\\ -> "\\\\"
          c < 0x20 or c > 0x7E -> "?"
          true -> <<c>>
        end
      end

    "\"" <> escaped <> "\""
  end

  defp headers(%{status: status, content_type: type, body: body, extra: extra}) do
    [
      code: status,
      content_type: String.to_charlist(type),
      content_length: body |> IO.iodata_length() |> Integer.to_charlist()
    ] ++ [{~c"x-content-type-options", ~c"nosniff"} | extra]
  end
end
