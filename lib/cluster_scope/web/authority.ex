defmodule ClusterScope.Web.Authority do
  @moduledoc """
  Who may ask what of an endpoint: the Host and Origin checks and the
  authority of a request's token over an operation's scope.

  ## Host (DNS rebinding)

  A web page whose name is made to resolve to 127.0.0.1 talks to the
  endpoint as "its own" site, with its own name in `Host`. So a request is
  served only when `Host` is a loopback name (`localhost`), an IP literal
  (a rebinding attack always uses a name), or one of `allowed_hosts`. Any
  other gets a JSON 421 before anything else is read. A request without
  `Host` (HTTP/1.0 from a script) cannot come from a browser and is served.

  ## Origin

  When a request carries `Origin` (browsers send it on every cross-site
  request and on every POST), it must be the endpoint's own origin:
  `http://` + a loopback name or the listen address (or an allowed host) +
  the endpoint's port, or one of `allowed_origins`. It is never compared
  with `Host`, which the client chooses. No CORS header is ever sent unless
  configured, so another site cannot read an answer either.

  ## Scopes

  Every operation has a scope (`t:ClusterScope.Operation.scope/0`):

    * `:read` is open, unless `read_token` is configured (then it needs the
      read token or the admin token);
    * `:sensitive` and `:control` need the admin `token`; with none
      configured they answer 403 (disabled), with the read token 403, with
      no or a wrong token 401.

  Tokens are compared in constant time (SHA-256 of both, then
  `:crypto.hash_equals/2`), the scheme `Bearer` without regard to case
  (RFC 7235).
  """

  alias ClusterScope.Error

  @loopback_names ["localhost", "localhost.localdomain", "ip6-localhost"]

  @doc "`:ok` when the request's `Host` may be served, else a 421 error."
  @spec check_host(map()) :: :ok | {:error, Error.t()}
  def check_host(%{headers: headers, settings: settings}) do
    case Map.fetch(headers, "host") do
      :error ->
        :ok

      {:ok, host} ->
        {name, port} = split_host(host)

        if name != nil and
             (loopback_or_ip?(name) or allowed_host?(name, port, settings.allowed_hosts)) do
          :ok
        else
          {:error,
           Error.new(
             :misdirected_request,
             "this endpoint does not serve the host #{inspect(String.slice(host, 0, 100))}",
             details: %{host: inspect(String.slice(host, 0, 100))}
           )}
        end
    end
  end

  @doc "`:ok` when the request has no `Origin` or one of the endpoint's own."
  @spec check_origin(map()) :: :ok | {:error, Error.t()}
  def check_origin(%{headers: %{"origin" => origin}, settings: settings}) do
    normal = origin |> String.downcase() |> String.trim_trailing("/")

    if own_origin?(normal, settings) or
         normal in Enum.map(settings.allowed_origins, &normalize_origin/1) do
      :ok
    else
      {:error,
       Error.new(
         :forbidden,
         "requests from origin #{inspect(String.slice(origin, 0, 200))} are not served",
         details: %{origin: inspect(String.slice(origin, 0, 200))},
         remediation: [
           "Use the dashboard served by this endpoint, or add the origin to http: [allowed_origins: ...]."
         ]
       )}
    end
  end

  def check_origin(_req), do: :ok

  @doc """
  `:ok` when the request's token grants `scope`, else the error to answer
  (401 without or with a wrong token, 403 when the scope is disabled or the
  token does not reach it).
  """
  @spec authorize(ClusterScope.Operation.scope(), map()) :: :ok | {:error, Error.t()}
  def authorize(scope, %{settings: settings} = req) do
    # With no admin token, sensitive and control are off whatever is sent.
    if scope != :read and settings.token == nil do
      disabled(scope)
    else
      case {scope, grant(req)} do
        {_, {:error, error}} -> {:error, error}
        {_, :admin} -> :ok
        {:read, :read} -> :ok
        {:read, :anonymous} -> if settings.read_token, do: needs_token(scope), else: :ok
        {_, :read} -> read_token_only(scope)
        {_, :anonymous} -> needs_token(scope)
      end
    end
  end

  @doc """
  What the request's `Authorization` header grants: `:admin`, `:read`,
  `:anonymous` (no header), or an error for a header that is not a valid
  token.
  """
  @spec grant(map()) :: :admin | :read | :anonymous | {:error, Error.t()}
  def grant(%{headers: headers, settings: settings}) do
    case Map.fetch(headers, "authorization") do
      :error ->
        :anonymous

      {:ok, value} ->
        with {:ok, given} <- bearer(value) do
          cond do
            matches?(given, settings.token) -> :admin
            matches?(given, settings.read_token) -> :read
            true -> {:error, Error.new(:unauthorized, "the bearer token is not valid")}
          end
        end
    end
  end

  defp bearer(value) do
    case String.split(String.trim(value), ~r/\s+/, parts: 2) do
      [scheme, token] when token != "" ->
        if String.downcase(scheme) == "bearer",
          do: {:ok, String.trim(token)},
          else: {:error, Error.new(:unauthorized, "only the Bearer scheme is accepted")}

      _ ->
        {:error, Error.new(:unauthorized, "Authorization must be `Bearer <token>`")}
    end
  end

  # Constant time whatever the lengths: compare digests.
  defp matches?(_given, nil), do: false

  defp matches?(given, token) do
    :crypto.hash_equals(:crypto.hash(:sha256, given), :crypto.hash(:sha256, token))
  end

  defp needs_token(scope) do
    {:error,
     Error.new(:unauthorized, "#{scope} operations need Authorization: Bearer <token>",
       details: %{scope: scope}
     )}
  end

  defp disabled(scope) do
    {:error,
     Error.new(:forbidden, "#{scope} operations are disabled: no token is configured",
       details: %{scope: scope},
       remediation: ["Set config :cluster_scope, http: [token: \"...\"] (at least 16 bytes)."]
     )}
  end

  defp read_token_only(scope) do
    {:error,
     Error.new(:forbidden, "the read token does not grant #{scope} operations",
       details: %{scope: scope},
       remediation: ["Use the admin token (http: [token: ...]) for #{scope} operations."]
     )}
  end

  # "name", "name:port", "[v6]" or "[v6]:port" -> {lower-case name, port | nil}
  defp split_host(host) do
    host = host |> String.trim() |> String.downcase()

    case Regex.run(~r/^(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/, host) do
      [_, name] -> {String.trim_trailing(name, "."), nil}
      [_, name, port] -> {String.trim_trailing(name, "."), String.to_integer(port)}
      nil -> {nil, nil}
    end
  end

  defp loopback_or_ip?(name), do: name in @loopback_names or ip_literal?(name)

  defp ip_literal?("[" <> rest) do
    match?(
      {:ok, _},
      :inet.parse_ipv6strict_address(String.to_charlist(String.trim_trailing(rest, "]")))
    )
  end

  defp ip_literal?(name),
    do: match?({:ok, _}, :inet.parse_ipv4strict_address(String.to_charlist(name)))

  defp allowed_host?(name, port, allowed) do
    Enum.any?(allowed, fn entry ->
      case split_host(entry) do
        {^name, nil} -> true
        {^name, ^port} -> true
        _ -> false
      end
    end)
  end

  # The endpoint's own origins: http://NAME:PORT for a loopback name, the
  # listen address, a loopback address or an allowed host.
  defp own_origin?("http://" <> authority, settings) do
    case split_host(authority) do
      {nil, _} ->
        false

      {name, port} ->
        port == settings.port and
          (name in @loopback_names or loopback_ip?(name) or
             name == listen_name(settings.ip) or
             allowed_host?(name, port, settings.allowed_hosts))
    end
  end

  defp own_origin?(_origin, _settings), do: false

  defp loopback_ip?(name) do
    text = name |> String.trim_leading("[") |> String.trim_trailing("]") |> String.to_charlist()

    case :inet.parse_strict_address(text) do
      {:ok, {127, _, _, _}} -> true
      {:ok, {0, 0, 0, 0, 0, 0, 0, 1}} -> true
      _ -> false
    end
  end

  defp listen_name(ip) when tuple_size(ip) == 8, do: "[#{:inet.ntoa(ip)}]"
  defp listen_name(ip), do: List.to_string(:inet.ntoa(ip))

  defp normalize_origin(origin), do: origin |> String.downcase() |> String.trim_trailing("/")
end
