defmodule ClusterScope.Config do
  @moduledoc """
  ClusterScope's configuration: one schema, validated once at start.

  Set options in the host application's config:

      config :cluster_scope,
        native_path: nil,
        node_timeout_ms: 5_000

  ## Options

  * `:native_path` - path of the NIF library without extension; `nil` (the
    default) loads `priv/native/libcluster_scope_nif.so`.
  * `:precompiled_url` - read at compile time only: the base URL of the
    precompiled NIF artifacts (`nil` by default: build with cargo); the
    artifact of the machine is downloaded, checked against the package's
    `checksum-cluster_scope.exs` and installed, else built from source.
    `CLUSTER_SCOPE_PRECOMPILED_URL` does the same; `CLUSTER_SCOPE_BUILD=1`
    always builds
  * `:node_timeout_ms` - default timeout of a call to one node, in
    milliseconds (`1..600_000`, default `5_000`). A cluster-wide call never
    waits longer than this for a node before reporting it in `node_errors`.
  * `:heartbeat_interval_ms` - interval of the heartbeats between agents
    (`20..10_000`, default `300`); see `ClusterScope.Cluster.Heartbeat`
  * `:phi_threshold` - phi at which a silent peer is suspected (default
    `8.0`); see the partition benchmark for how it was chosen
  * `:quorum` - a static quorum: with it, this node's side of a split is
    the majority only when it has at least this many nodes (default `nil`:
    more than half)
  * `:health_interval_ms` - how often each node's health monitor samples
    (`100..600_000`, default `1_000`); it backs off by itself under load, see
    `ClusterScope.Health.Monitor`
  * `:allow_dangerous_actions` - `false` by default: `force: true` on kill and
    send is refused; when `true` it lets them reach processes of the
    runtime's own applications, never `init`, `auth`, `net_kernel`,
    `global`, `code_server` or `application_controller`
  * `:allow_mode_switch` - `false` by default: `set_mode` is refused, so
    nobody can replace a production node's view of its cluster with a
    simulation or start peers from it (`mix cluster_scope.demo` sets it)
  * `:redact_keys` - names whose values never leave a node, wherever they
    sit in a term (map keys, keyword and tuple keys, compared without case
    and as substrings); default #{inspect(~w(password passwd secret token cookie
    api_key apikey authorization credential private_key))}. The distribution
    cookies and the endpoint's tokens are always redacted.
  * `:startable_modules` - the modules whose processes an operation may start
    (`horde_process_start`), default `[]`: none. Starting a child runs its
    start function with arguments from the request, so only modules the host
    names here are ever started; a module that is not listed is refused
    before anything runs, whoever asks
  * `:sandbox_max_processes` - the most processes one sandbox may hold
    (`1..1_000_000`, default `10_000`); a create or a migration past it is
    refused naming `children` (see `ClusterScope.Sandbox`). Sandboxes start
    only modules listed in `:startable_modules`
  * `:sandbox_max_per_node` - the most sandboxes one node runs a part of
    (`1..100_000`, default `100`); checked on that node when a part starts
    there (create, migrate, failover)
  * `:sandbox_start_timeout_ms` - how long a node's part of a sandbox
    may take to start its processes (`100..600_000`, default `30_000`); a
    child whose start hangs past it makes the create (or migration) fail and
    its part is killed with the processes it started
  * `:departed_grace_ms` - a node whose connection closed (a stop, a deploy)
    is shown as `departed`, not down, after this long (default `30_000`);
    until then it is `down` and the cluster's health says degraded. A
    departed node is no problem for health and never counts in a majority.
    Members cut off by a tick timeout or by `global` are not departed: they
    stay unreachable (a split is still a split); see
    `ClusterScope.Cluster.State`
  * `:departed_retention_ms` - and leaves the cluster's picture (topology,
    matrix, everything kept about it) this long after its nodedown (default
    `600_000`). Both are read at each nodedown.
  * `:code_drift_check_interval_ms` - how often the code-drift watch
    compares the loaded code of the nodes (`100..3_600_000`, default
    `30_000`); only one node of the cluster checks (see
    `ClusterScope.NodeViews.CodeDrift.Watch`)
  * `:code_drift_alert_after_ms` - a module loaded at different versions
    for this long raises the `code_drift_modules` health alert
    (`0..86_400_000`, default `300_000`: five minutes, longer than a rolling
    deploy)
  * `:http` - the embedded HTTP API (`ClusterScope.Web.Endpoint`), a keyword
    list; missing keys take their defaults:
    * `enabled: false` - start the endpoint with the application
    * `ip: {127, 0, 0, 1}` - listen address (loopback unless you say otherwise)
    * `port: 4848` (`0` picks a free port)
    * `token: nil` - the admin bearer token: every scope (read, sensitive,
      control); without one, sensitive and control operations answer 403
    * `read_token: nil` - a second token that grants the read scope only;
      when set, read operations need it (or the admin token) too
    * `read_only: false` - when `true`, control operations are not served
      (404) and not listed
    * `max_body_bytes: 1_048_576` - larger request bodies answer 413
    * `allowed_hosts: []` - host names (or `host:port`) besides the loopback
      names and the listen address that may appear in `Host`; any other
      `Host` gets a JSON 421 (DNS rebinding)
    * `allowed_origins: []` - `Origin`s (`scheme://host:port`) allowed to
      send requests from a browser besides the endpoint's own loopback
      origins; never compared with `Host`
    * `max_connections: 1_024` - connections httpd serves at once; an idle
      or slow one costs one small process
    * `client_concurrency: 8` - requests one client (peer address) may have
      running at once in the general lane; more answer a JSON 429
    * `client_rate: 50` and `client_burst: 100` - requests per second one
      client may make (a token bucket); more answer a JSON 429 with
      `Retry-After`
    * `stream_per_client: 4` - live streams (`GET /api/v1/stream`) one
      client may hold open at once; more answer a JSON 429
    * `max_stream_s: 300` - a stream is closed after this many seconds (the
      client reconnects with its last event id and loses nothing)
    * `stream_heartbeat_ms: 15_000` - a heartbeat event on an idle stream
      this often

  ## Why a bad option does not stop the host

  Validation errors are logged as one clear message per option (naming the
  option, the bad value and what is expected) and the option falls back to its
  default: a debugging library must never stop the application it observes.
  `errors/0` returns the problems found at the last load, so a test or a
  health probe can still fail on them.
  """

  require Logger

  @key {__MODULE__, :config}
  @errors_key {__MODULE__, :errors}

  @http_defaults [
    enabled: false,
    ip: {127, 0, 0, 1},
    port: 4848,
    token: nil,
    read_token: nil,
    read_only: false,
    max_body_bytes: 1_048_576,
    allowed_hosts: [],
    allowed_origins: [],
    max_connections: 1_024,
    client_concurrency: 8,
    client_rate: 50,
    client_burst: 100,
    stream_per_client: 4,
    max_stream_s: 300,
    stream_heartbeat_ms: 15_000
  ]

  @redact_keys ~w(password passwd secret token cookie api_key apikey authorization
                  credential private_key)

  @schema [
    native_path: [type: :path, default: nil],
    node_timeout_ms: [type: {:integer, 1, 600_000}, default: 5_000],
    http: [type: :http, default: @http_defaults],
    heartbeat_interval_ms: [type: {:integer, 20, 10_000}, default: 300],
    phi_threshold: [type: {:number, 1.0, 100.0}, default: 8.0],
    quorum: [type: {:integer_or_nil, 1, 100_000}, default: nil],
    health_interval_ms: [type: {:integer, 100, 600_000}, default: 1_000],
    allow_dangerous_actions: [type: :boolean, default: false],
    allow_mode_switch: [type: :boolean, default: false],
    redact_keys: [type: :strings, default: @redact_keys],
    startable_modules: [type: :modules, default: []],
    sandbox_max_processes: [type: {:integer, 1, 1_000_000}, default: 10_000],
    sandbox_max_per_node: [type: {:integer, 1, 100_000}, default: 100],
    sandbox_start_timeout_ms: [type: {:integer, 100, 600_000}, default: 30_000],
    departed_grace_ms: [type: {:integer, 0, 86_400_000}, default: 30_000],
    departed_retention_ms: [type: {:integer, 0, 604_800_000}, default: 600_000],
    code_drift_check_interval_ms: [type: {:integer, 100, 3_600_000}, default: 30_000],
    code_drift_alert_after_ms: [type: {:integer, 0, 86_400_000}, default: 300_000],
    precompiled_url: [type: :path, default: nil],
    profile: [type: {:enum, [:development, :test, :production]}, default: nil],
    features: [
      type: :features,
      default: [heartbeats: true, tracing: true, sandboxes: true, process_control: true]
    ],
    trace_max_rate: [type: {:integer_or_nil, 1, 100_000}, default: nil]
  ]

  # What each profile changes when the option is not set explicitly.
  @profile_trace_max_rate %{production: 5_000, development: 100_000, test: 100_000}

  @typedoc "A validated configuration."
  @type t :: %{atom() => term()}

  @typedoc "One validation problem: the option and a message."
  @type error :: {atom(), String.t()}

  @doc "The options ClusterScope knows, with their defaults."
  @spec defaults() :: t()
  def defaults, do: Map.new(@schema, fn {key, spec} -> {key, spec[:default]} end)

  @doc """
  Validates a keyword list of options.

  Returns `{:ok, config}` when every option is valid, or
  `{:error, config, errors}` where `config` has the defaults in place of the
  invalid options and `errors` names each of them.
  """
  @spec validate(keyword()) :: {:ok, t()} | {:error, t(), [error()]}
  def validate(opts) when is_list(opts) do
    {config, errors} =
      Enum.reduce(opts, {defaults(), []}, fn {key, value}, {config, errors} ->
        case Keyword.fetch(@schema, key) do
          {:ok, spec} ->
            case check(spec[:type], value) do
              :ok when key == :http ->
                {Map.put(config, key, Keyword.merge(@http_defaults, value)), errors}

              :ok ->
                {Map.put(config, key, value), errors}

              {:error, message} ->
                {config, [{key, "#{inspect(value)} #{message}"} | errors]}
            end

          :error ->
            known = @schema |> Keyword.keys() |> Enum.map_join(", ", &inspect/1)
            {config, [{key, "is not a ClusterScope option (known: #{known})"} | errors]}
        end
      end)

    case errors do
      [] -> {:ok, config}
      _ -> {:error, config, Enum.reverse(errors)}
    end
  end

  @doc """
  Reads `Application.get_all_env(:cluster_scope)`, validates it, logs each
  problem, and stores the result for `get/1`. Called by the application at
  start; calling it again reloads the configuration.
  """
  @spec load() :: t()
  def load do
    env =
      :cluster_scope
      |> Application.get_all_env()
      |> Keyword.drop([:included_applications])

    {config, errors} =
      case validate(env) do
        {:ok, config} -> {config, []}
        {:error, config, errors} -> {config, errors}
      end

    config = apply_profile(config, env)

    for {key, message} <- errors do
      Logger.error(
        "ClusterScope config: option #{inspect(key)} #{message}; using the default " <>
          "#{inspect(Map.get(defaults(), key))}."
      )
    end

    :persistent_term.put(@key, config)
    :persistent_term.put(@errors_key, errors)
    config
  end

  @doc """
  The profile in force: the `:profile` option, else `:test` or `:development`
  under Mix in those environments, else `:production` (a release has no Mix).
  """
  @spec profile() :: :development | :test | :production
  def profile, do: get(:profile) || detect_profile()

  defp detect_profile do
    # Mix may be loadable in a VM where it does not run (its state table is
    # missing): that is not a Mix environment.
    case Code.ensure_loaded?(Mix) and Process.whereis(Mix.State) != nil and Mix.env() do
      :test -> :test
      :dev -> :development
      _ -> :production
    end
  rescue
    _ -> :production
  end

  # Environment-sensible defaults for what the host left unset: in
  # production, an endpoint without an admin token serves no control
  # operation (read_only), and a trace session may keep at most 5,000
  # events per second per node.
  defp apply_profile(config, env) do
    profile = config.profile || detect_profile()
    config = Map.put(config, :profile, profile)
    http_env = Keyword.get(env, :http, [])

    config =
      if profile == :production and is_list(http_env) and
           not Keyword.has_key?(http_env, :read_only) and config.http[:token] == nil,
         do: Map.update!(config, :http, &Keyword.put(&1, :read_only, true)),
         else: config

    Map.update!(config, :trace_max_rate, &(&1 || Map.fetch!(@profile_trace_max_rate, profile)))
  end

  @doc "The value of one option (the default when not loaded yet)."
  @spec get(atom()) :: term()
  def get(key) when is_atom(key) do
    @key |> :persistent_term.get(defaults()) |> Map.fetch!(key)
  end

  @doc "The problems found at the last `load/0`."
  @spec errors() :: [error()]
  def errors, do: :persistent_term.get(@errors_key, [])

  @doc "The defaults of the `:http` option."
  @spec http_defaults() :: keyword()
  def http_defaults, do: @http_defaults

  @doc """
  Validates an `:http` keyword list and fills in the defaults: `{:ok, map}` or
  `{:error, message}` naming the first bad key.
  """
  @spec validate_http(keyword()) :: {:ok, map()} | {:error, String.t()}
  def validate_http(opts) when is_list(opts) do
    if Keyword.keyword?(opts) do
      merged = Keyword.merge(@http_defaults, opts)

      Enum.find_value(merged, {:ok, Map.new(merged)}, fn {key, value} ->
        case check_http(key, value) do
          :ok -> nil
          {:error, message} -> {:error, "http: #{key} #{inspect(value)} #{message}"}
        end
      end)
    else
      {:error, "http must be a keyword list"}
    end
  end

  def validate_http(_), do: {:error, "http must be a keyword list"}

  defp check_http(:enabled, v) when is_boolean(v), do: :ok
  defp check_http(:read_only, v) when is_boolean(v), do: :ok
  defp check_http(:port, v) when is_integer(v) and v in 0..65_535, do: :ok
  defp check_http(key, nil) when key in [:token, :read_token], do: :ok

  defp check_http(key, v)
       when key in [:token, :read_token] and is_binary(v) and byte_size(v) >= 16,
       do: :ok

  defp check_http(key, v)
       when key in [:max_connections, :client_concurrency, :client_rate, :client_burst] and
              is_integer(v) and v in 1..100_000,
       do: :ok

  defp check_http(:max_body_bytes, v) when is_integer(v) and v in 1..1_073_741_824, do: :ok
  defp check_http(:stream_per_client, v) when is_integer(v) and v in 1..1_000, do: :ok
  defp check_http(:max_stream_s, v) when is_integer(v) and v in 1..86_400, do: :ok
  defp check_http(:stream_heartbeat_ms, v) when is_integer(v) and v in 100..600_000, do: :ok

  defp check_http(:ip, v) when is_tuple(v) do
    if :inet.is_ip_address(v), do: :ok, else: {:error, "must be an IP address tuple"}
  end

  defp check_http(key, v) when key in [:allowed_origins, :allowed_hosts] and is_list(v) do
    if Enum.all?(v, &is_binary/1), do: :ok, else: {:error, "must be a list of strings"}
  end

  defp check_http(key, _) when key in [:enabled, :read_only], do: {:error, "must be a boolean"}
  defp check_http(:port, _), do: {:error, "must be an integer in 0..65535"}

  defp check_http(key, _) when key in [:token, :read_token],
    do: {:error, "must be nil or a string of at least 16 bytes"}

  defp check_http(key, _)
       when key in [:max_connections, :client_concurrency, :client_rate, :client_burst],
       do: {:error, "must be an integer in 1..100000"}

  defp check_http(:max_body_bytes, _), do: {:error, "must be an integer in 1..1073741824"}
  defp check_http(:stream_per_client, _), do: {:error, "must be an integer in 1..1000"}
  defp check_http(:max_stream_s, _), do: {:error, "must be an integer in 1..86400"}
  defp check_http(:stream_heartbeat_ms, _), do: {:error, "must be an integer in 100..600000"}
  defp check_http(:ip, _), do: {:error, "must be an IP address tuple"}

  defp check_http(key, _) when key in [:allowed_origins, :allowed_hosts],
    do: {:error, "must be a list of strings"}

  defp check_http(_, _),
    do: {:error, "is not an http option (known: #{Keyword.keys(@http_defaults) |> inspect()})"}

  defp check(:http, value) do
    case validate_http(value) do
      {:ok, _} -> :ok
      {:error, message} -> {:error, "is invalid: " <> message}
    end
  end

  defp check({:number, min, max}, value) when is_number(value) and value >= min and value <= max,
    do: :ok

  defp check({:number, min, max}, _), do: {:error, "must be a number in #{min}..#{max}"}
  defp check({:integer_or_nil, _, _}, nil), do: :ok
  defp check({:integer_or_nil, min, max}, value), do: check({:integer, min, max}, value)

  defp check({:enum, values}, value) do
    if value == nil or value in values,
      do: :ok,
      else: {:error, "must be one of #{Enum.map_join(values, ", ", &inspect/1)}"}
  end

  defp check(:features, value) when is_list(value) do
    known = Keyword.keys(Keyword.fetch!(@schema, :features)[:default])

    cond do
      not Keyword.keyword?(value) ->
        {:error, "must be a keyword list of area: boolean"}

      (unknown = Keyword.keys(value) -- known) != [] ->
        {:error, "names unknown areas #{inspect(unknown)} (known: #{inspect(known)})"}

      not Enum.all?(value, fn {_, v} -> is_boolean(v) end) ->
        {:error, "must map each area to true or false"}

      true ->
        :ok
    end
  end

  defp check(:features, _), do: {:error, "must be a keyword list of area: boolean"}

  defp check(:boolean, value) when is_boolean(value), do: :ok
  defp check(:boolean, _), do: {:error, "must be true or false"}

  defp check(:strings, value) when is_list(value) do
    if value != [] and Enum.all?(value, &(is_binary(&1) and &1 != "")),
      do: :ok,
      else: {:error, "must be a non-empty list of non-empty strings"}
  end

  defp check(:strings, _), do: {:error, "must be a non-empty list of non-empty strings"}

  defp check(:modules, value) when is_list(value) do
    if Enum.all?(value, &(is_atom(&1) and &1 not in [nil, true, false])),
      do: :ok,
      else: {:error, "must be a list of module names"}
  end

  defp check(:modules, _), do: {:error, "must be a list of module names"}

  defp check(:path, nil), do: :ok
  defp check(:path, value) when is_binary(value) and value != "", do: :ok
  defp check(:path, _), do: {:error, "must be a non-empty string path or nil"}

  defp check({:integer, min, max}, value) when is_integer(value) and value in min..max, do: :ok
  defp check({:integer, min, max}, _), do: {:error, "must be an integer in #{min}..#{max}"}
end
