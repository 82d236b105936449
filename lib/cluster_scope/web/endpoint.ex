defmodule ClusterScope.Web.Endpoint do
  @moduledoc """
  The embedded HTTP endpoint, on OTP's own `:inets` httpd (no Hex package).

  Serves every registered operation at its `rest_config` path, the OpenAPI
  document at `GET /api/openapi.json`, and the dashboard's static files from
  `priv/static`. Started by the application when `config :cluster_scope,
  http: [enabled: true]`; `start/1` starts more (tests use port 0).

  ## Safe by default

    * listens on `127.0.0.1` unless `ip:` says otherwise;
    * serves only requests whose `Host` is a loopback name, an IP literal or
      an allowed host, and whose `Origin`, when sent, is its own (DNS
      rebinding, cross-site requests): see `ClusterScope.Web.Authority`;
    * sensitive operations (states, mailboxes, trace events) and control
      operations (kill, send, trace, thresholds, mode) need the admin
      `Authorization: Bearer <token>`; with no token configured they answer
      403; in `read_only: true` control operations are not served at all
      (404) nor listed; a `read_token`, when set, guards the rest;
    * every answer is redacted (`ClusterScope.Secrets`): cookies, tokens and
      values under secret keys never leave the node;
    * admission control (`ClusterScope.Web.Admission`): health and control
      have places of their own, each client has a concurrency and a rate
      limit (JSON 429 with `Retry-After`), up to `max_connections` (1,024)
      connections are served, and a client sending under 100 bytes a
      second is dropped;
    * bodies over `max_body_bytes` (1 MiB) are refused with a JSON 413;
      bodies over twice that are refused by httpd from the headers alone,
      before they are read (its own HTML 413).
  """

  alias ClusterScope.Config

  @typedoc "A running endpoint."
  @type t :: %{
          pid: pid(),
          id: String.t(),
          ip: :inet.ip_address(),
          port: :inet.port_number(),
          url: String.t()
        }

  @supervisor ClusterScope.Web.EndpointSupervisor

  @doc false
  def child_spec(opts) do
    %{
      id: {__MODULE__, Keyword.get(opts, :port)},
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      restart: Keyword.get(opts, :restart, :permanent)
    }
  end

  @doc "Starts an endpoint linked to the caller (a supervisor)."
  @spec start_link(keyword()) :: {:ok, pid()} | {:error, term()}
  def start_link(opts) do
    opts = Keyword.drop(opts, [:restart])

    with {:ok, settings} <- Config.validate_http(opts),
         :ok <- ClusterScope.Secrets.add_tokens([settings.token, settings.read_token]),
         {:ok, port} <- pick_port(settings),
         id = "cluster_scope_#{System.unique_integer([:positive])}",
         settings = %{settings | port: port} |> Map.put(:id, id),
         :ok <- :persistent_term.put({__MODULE__, id}, settings),
         {:ok, pid} <- :inets.start(:httpd, httpd_config(id, settings, port), :stand_alone) do
      widen_backlog(pid, settings.ip, port)
      endpoint = %{pid: pid, id: id, ip: settings.ip, port: port, url: url(settings.ip, port)}
      :persistent_term.put({__MODULE__, :endpoint, pid}, endpoint)
      {:ok, pid}
    end
  end

  @doc """
  Starts an endpoint under ClusterScope's supervision (it outlives the
  caller) with `http` options (see `ClusterScope.Config`) merged over the
  defaults. Returns its pid, address, port and URL.
  """
  @spec start(keyword()) :: {:ok, t()} | {:error, term()}
  def start(opts \\ []) do
    case DynamicSupervisor.start_child(@supervisor, child_spec([restart: :temporary] ++ opts)) do
      {:ok, pid} -> {:ok, info(pid)}
      {:error, _} = error -> error
    end
  end

  @doc "The address, port and URL of a running endpoint."
  @spec info(pid()) :: t()
  def info(pid), do: :persistent_term.get({__MODULE__, :endpoint, pid})

  @doc "Stops an endpoint started with `start/1`."
  @spec stop(t() | pid()) :: :ok
  def stop(%{pid: pid}), do: stop(pid)

  def stop(pid) when is_pid(pid) do
    case :persistent_term.get({__MODULE__, :endpoint, pid}, nil) do
      nil ->
        :ok

      endpoint ->
        DynamicSupervisor.terminate_child(@supervisor, pid)
        :persistent_term.erase({__MODULE__, :endpoint, pid})
        :persistent_term.erase({__MODULE__, endpoint.id})
        :ok
    end
  end

  @doc """
  The settings of the endpoint serving a request (by its id), or of the
  application's configured endpoint.
  """
  @spec settings(String.t() | nil) :: map()
  def settings(id \\ nil)

  def settings(nil) do
    {:ok, settings} = Config.validate_http(Config.get(:http))
    Map.put(settings, :id, "configured")
  end

  def settings(id), do: :persistent_term.get({__MODULE__, id})

  @doc "The URL of an address and port."
  @spec url(:inet.ip_address(), :inet.port_number()) :: String.t()
  def url(ip, port), do: "http://#{:inet.ntoa(ip)}:#{port}"

  defp httpd_config(id, settings, port) do
    root = Path.join(System.tmp_dir!(), "cluster_scope_httpd")
    File.mkdir_p!(root)

    [
      port: port,
      bind_address: settings.ip,
      ipfamily: if(tuple_size(settings.ip) == 8, do: :inet6, else: :inet),
      # The id travels in server_name so the handler finds its settings.
      server_name: String.to_charlist(id),
      server_root: String.to_charlist(root),
      document_root: String.to_charlist(root),
      modules: [ClusterScope.Web.Handler],
      # httpd refuses bodies past twice the limit from the headers alone (its
      # own HTML 413, before reading them); bodies between the limit and that
      # get the JSON 413 of the handler. Memory per request stays bounded.
      max_body_size: settings.max_body_bytes * 2,
      # Connections are cheap (a process each); admission control decides
      # what runs (ClusterScope.Web.Admission), so a few hundred slow or
      # idle connections cannot lock the others out.
      max_clients: settings.max_connections,
      keep_alive_timeout: 15,
      max_header_size: 16_384,
      max_uri_size: 8_192,
      minimum_bytes_per_second: 100
    ]
  end

  # httpd listens with a backlog of 128 and has no option for it. A burst of
  # connections past the backlog drops SYNs, and a dropped SYN is retried
  # after a second: a health probe caught in a burst of 500 connections
  # waited that long (seen in bench/http_admission.exs). listen(2) on a
  # duplicate of the listening descriptor sets a new backlog on the same
  # kernel socket (Linux and the BSDs) without touching httpd's port. The
  # duplicate is held by a small process that closes it once httpd's own
  # listener is gone (closing it while httpd still listens is not safe on
  # OTP 25). Where any of it fails, httpd's backlog stays.
  @backlog 1_024

  defp widen_backlog(httpd, ip, port) do
    case listener(ip, port) do
      nil ->
        :ok

      socket ->
        with {:ok, fd} <- :inet.getfd(socket) do
          parent = self()
          keeper = spawn(fn -> keep_backlog(parent, httpd, fd, ip, port) end)

          receive do
            {^keeper, result} -> result
          after
            2_000 -> :ok
          end
        end
    end
  catch
    _, _ -> :ok
  end

  defp keep_backlog(parent, httpd, fd, ip, port) do
    monitor = Process.monitor(httpd)

    case :socket.open(fd, %{dup: true}) do
      {:ok, dup} ->
        send(parent, {self(), :socket.listen(dup, @backlog)})

        receive do
          {:DOWN, ^monitor, _, _, _} ->
            await_closed(ip, port, 50)
            :socket.close(dup)
        end

      error ->
        send(parent, {self(), error})
    end
  end

  defp await_closed(_ip, _port, 0), do: :ok

  defp await_closed(ip, port, tries) do
    if listener(ip, port) do
      Process.sleep(100)
      await_closed(ip, port, tries - 1)
    end
  end

  # httpd's listening socket: the inet port bound to ip:port with no peer.
  defp listener(ip, port) do
    Enum.find(:erlang.ports(), fn socket ->
      :erlang.port_info(socket, :name) == {:name, ~c"tcp_inet"} and
        :inet.sockname(socket) == {:ok, {ip, port}} and
        :inet.peername(socket) == {:error, :enotconn}
    end)
  end

  # Port 0 means "any free port": httpd needs a number, so take one from the
  # kernel first.
  defp pick_port(%{port: 0, ip: ip}) do
    with {:ok, socket} <- :gen_tcp.listen(0, ip: ip),
         {:ok, port} <- :inet.port(socket) do
      :gen_tcp.close(socket)
      {:ok, port}
    end
  end

  defp pick_port(%{port: port}), do: {:ok, port}
end
