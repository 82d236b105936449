defmodule ClusterScope.Arsenal do
  @moduledoc """
  The bridge to a host's Arsenal registry (the `arsenal` package,
  `Arsenal.Registry`, or the application Arsenal came from,
  `OTPSupervisor.Core.Arsenal.Registry`).

  Every operation defined with `use ClusterScope.Operation` has an Arsenal
  face, `<Operation>.Arsenal` (`ClusterScope.Arsenal.Face`): that module is
  what gets registered, under a name of its own (`:cluster_scope_process_list`)
  and a route of its own (`/api/v1/cluster_scope/cluster/processes`), so none
  of Arsenal's built-ins (`:process_list`, `GET /api/v1/cluster/processes`)
  or of the host's is replaced. Its `execute/1` runs the operation through
  ClusterScope's runner (validation, requirements, isolation in a process of
  its own, error normalisation, redaction, partial results) under a deadline
  below the 5 s timeout of Arsenal's registry call (4 s by default), so a
  slow operation answers ClusterScope's `timeout` error instead of killing
  the caller's `Arsenal.Registry.execute_operation/3`.

  ## Registering

  Once, after the registry has started:

      {:ok, report} = ClusterScope.Arsenal.register_all()

  or, to stay registered (the keeper waits for the registry, registers, and
  registers again whatever goes missing, for example when the registry
  restarts and its table is gone), in the host's supervision tree after
  Arsenal:

      children = [..., {ClusterScope.Arsenal, allow: ["kill_process"], authorize: &MyApp.arsenal_allowed/1}]

  A name or a route already held by another module in the registry is never
  replaced: that operation is reported as failed, with the holder.

  ## Read-only by default

  Only operations of scope `:read` that change nothing are registered by
  default (topology, health, metrics, process rows, ...). Mutations (kill,
  send, trace, set mode, thresholds: scope `:control`) and `:sensitive` reads
  (process state, trace events and sessions: anything that can hold a
  secret) are registered only when the host names them in `allow:`. A name in
  `allow:` that no operation has is an error (a typo must not silently leave
  an operation out, or in). Operations whose requirements are missing on this
  node are skipped with the reason. With `read_only: true` mutating
  operations are skipped even when listed.

  ## Authority

  When the HTTP `read_token` is configured, `:read` faces are guarded too
  (the read token or the admin token grants them), so registering with
  Arsenal does not open what the endpoint keeps closed. The faces of
  `:sensitive` and `:control` operations declare
  `metadata.requires_authentication: true` and implement `authorize/2`,
  which Arsenal's registry calls before `execute/1`. Without authority they
  answer `{:error, :unauthorized}`. Authority is either:

    * ClusterScope's admin token (`http: [token: ...]`) in the context:
      `Arsenal.Registry.execute_operation(:cluster_scope_kill_process, params,
      %{cluster_scope_token: token})` (compared in constant time, the same
      rules as the HTTP API: with no admin token configured, nothing is
      granted);
    * or the host's authorizer, `authorize:` (a function of one argument or
      `{module, function}`), called with `%{operation:, version:, scope:,
      mutating:, params:, context:}`; only `:ok` grants, anything else (or a
      raise) refuses.

  Arsenal's own `Arsenal.execute_operation/2` (used by `Arsenal.Adapter`)
  calls `execute/1` without `authorize/2`. So a guarded face's `execute/1`
  runs only when `authorize/2` granted these very params just before, in the
  same process (the registry's); otherwise it answers
  `{:error, "unauthorized: ..."}`. Serve guarded operations through
  `Arsenal.Registry.execute_operation/3` with a context.

  ## What Arsenal's adapter makes of the answers

  `Arsenal.Adapter.process_request/2` answers 200 with `format_response/1`
  of the data, 400 for `{:error, binary}`, 500 for any other error. A face
  answers client errors (HTTP 4xx in ClusterScope: `invalid_params`,
  `not_found`, `unauthorized`, ...) as `{:error, "code: message"}` (so 400)
  and the others (`timeout`, `unavailable`, `internal`, ...) as the
  `ClusterScope.Error` (so 500). Finer statuses need a host adapter that
  looks at the code.
  """

  use GenServer
  require Logger

  alias ClusterScope.Arsenal.Face
  alias ClusterScope.Operation.Registry

  @registries [Arsenal.Registry, OTPSupervisor.Core.Arsenal.Registry]
  @max_deadline_ms 4_500
  @check_ms 5_000

  @typedoc "What `register_all/1` did."
  @type report :: %{
          registry: module(),
          registered: [module()],
          names: %{module() => atom()},
          skipped: [%{module: module(), reason: String.t()}],
          failed: [%{module: module(), reason: String.t()}]
        }

  @typedoc "Why `register_all/1` did not register."
  @type error ::
          :no_arsenal_registry
          | {:unknown_operations, [String.t()]}
          | {:invalid_option, atom(), String.t()}
          | {:nothing_registered, report()}

  @doc """
  Registers the faces of the available ClusterScope operations into the
  host's Arsenal registry: every non-mutating `:read` operation, plus the
  mutating and `:sensitive` ones named in `:allow`.

  Options: `:registry` (module), `:allow` (operation names, strings or
  atoms; default `[]`), `:read_only` (boolean: no mutation even if listed),
  `:deadline_ms` (the longest a face's run may take, 1..#{@max_deadline_ms};
  default #{Face.default_deadline_ms()}: under Arsenal's 5 s call timeout),
  `:authorize` (the host's authorizer, see "Authority").

  Returns `{:ok, report}` when at least one operation was registered;
  `{:error, {:nothing_registered, report}}` when none was;
  `{:error, {:unknown_operations, names}}` when `:allow` names an operation
  that does not exist; `{:error, {:invalid_option, key, why}}`; or
  `{:error, :no_arsenal_registry}` when no registry is loaded and running.
  Nothing is registered on an error found before registering.

  Cost: one `list_operations` call and one `register_operation` call per
  registered operation into the registry's process.
  """
  @spec register_all(keyword()) :: {:ok, report()} | {:error, error()}
  def register_all(opts \\ []) do
    with {:ok, allow} <- allowed(Keyword.get(opts, :allow, [])),
         {:ok, settings} <- settings(opts) do
      case Keyword.get_lazy(opts, :registry, &find_registry/0) do
        nil ->
          {:error, :no_arsenal_registry}

        registry ->
          Face.put_settings(settings)
          report = register_into(registry, Keyword.get(opts, :read_only, false) == true, allow)

          if report.registered == [],
            do: {:error, {:nothing_registered, report}},
            else: {:ok, report}
      end
    end
  end

  @doc """
  Removes the faces of every ClusterScope operation from the registry (only
  those held by a face). Returns the names removed.
  """
  @spec unregister_all(keyword()) :: {:ok, [atom()]} | {:error, :no_arsenal_registry}
  def unregister_all(opts \\ []) do
    case Keyword.get_lazy(opts, :registry, &find_registry/0) do
      nil ->
        {:error, :no_arsenal_registry}

      registry ->
        removed =
          for {name, module} <- held(registry),
              function_exported?(module, :__cluster_scope_face__, 0),
              safe(fn -> registry.unregister_operation(name) end) == :ok,
              do: name

        {:ok, removed}
    end
  end

  @doc "The host's Arsenal registry module, when one is loaded and running."
  @spec find_registry() :: module() | nil
  def find_registry do
    Enum.find(@registries, fn module ->
      Code.ensure_loaded?(module) and function_exported?(module, :register_operation, 1) and
        is_pid(Process.whereis(module))
    end)
  end

  # -- the keeper ----------------------------------------------------------------

  @doc """
  Starts the keeper: it registers (`register_all/1`, same options, plus
  `:check_ms`, default #{@check_ms}) as soon as the registry runs, checks
  again at 0.25, 0.5, 1 and 2 s and then every `check_ms` with one
  `list_operations` call, and registers again whatever is missing (a
  restarted registry starts empty). It monitors the registry's process.

  Bad options are logged and the keeper does not start (`:ignore`): it never
  stops the host's supervisor.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name, __MODULE__)
    GenServer.start_link(__MODULE__, opts, name: name)
  end

  @doc "The keeper's last outcome: `{:ok, report}`, an error, or `:waiting`."
  @spec status(GenServer.server()) :: {:ok, report()} | {:error, error()} | :waiting
  def status(server \\ __MODULE__), do: GenServer.call(server, :status)

  @impl GenServer
  def init(opts) do
    with {:ok, _} <- allowed(Keyword.get(opts, :allow, [])),
         {:ok, _} <- settings(opts) do
      send(self(), :check)

      {:ok,
       %{
         opts: Keyword.delete(opts, :check_ms),
         check_ms: Keyword.get(opts, :check_ms, @check_ms),
         monitor: nil,
         status: :waiting,
         expected: %{},
         backoff: [250, 500, 1_000, 2_000],
         wait_ms: 50
       }}
    else
      {:error, reason} ->
        Logger.error("ClusterScope.Arsenal not started: #{inspect(reason)}")
        :ignore
    end
  end

  @impl GenServer
  def handle_call(:status, _from, state), do: {:reply, state.status, state}

  @impl GenServer
  def handle_info(:check, state) do
    registry = Keyword.get_lazy(state.opts, :registry, &find_registry/0)

    if registry == nil or not is_pid(Process.whereis(registry)) do
      # Not running yet: look again, up to once a second.
      Process.send_after(self(), :check, state.wait_ms)
      {:noreply, %{state | wait_ms: min(state.wait_ms * 2, 1_000)}}
    else
      state = state |> watch(registry) |> sync(registry)
      {delay, backoff} = next_check(state)
      Process.send_after(self(), :check, delay)
      {:noreply, %{state | backoff: backoff, wait_ms: 50}}
    end
  end

  def handle_info({:DOWN, ref, :process, _, _}, %{monitor: ref} = state) do
    # The registry is gone and its table with it: register again in the
    # next one, and check often for a while.
    send(self(), :check)
    {:noreply, %{state | monitor: nil, expected: %{}, backoff: [250, 500, 1_000, 2_000]}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp watch(%{monitor: nil} = state, registry) do
    case Process.whereis(registry) do
      pid when is_pid(pid) -> %{state | monitor: Process.monitor(pid)}
      nil -> state
    end
  end

  defp watch(state, _registry), do: state

  defp sync(state, registry) do
    held = held(registry)

    if state.expected != %{} and Enum.all?(state.expected, fn {n, m} -> held[n] == m end) do
      state
    else
      status = register_all(Keyword.put(state.opts, :registry, registry))

      expected =
        case status do
          {:ok, report} -> Map.new(report.registered, &{report.names[&1], face!(&1)})
          _ -> %{}
        end

      if status != state.status, do: log(status)
      %{state | status: status, expected: expected}
    end
  end

  defp next_check(%{backoff: [delay | rest]}), do: {delay, rest}
  defp next_check(%{backoff: [], check_ms: check_ms}), do: {check_ms, []}

  defp log({:ok, report}) do
    Logger.info(
      "ClusterScope registered #{length(report.registered)} operations in #{inspect(report.registry)}" <>
        failed_text(report)
    )
  end

  defp log({:error, {:nothing_registered, report}}),
    do: Logger.warning("ClusterScope registered no operation in Arsenal" <> failed_text(report))

  defp log(other), do: Logger.warning("ClusterScope Arsenal registration: #{inspect(other)}")

  defp failed_text(%{failed: []}), do: ""

  defp failed_text(%{failed: failed}),
    do: "; failed: " <> Enum.map_join(failed, "; ", &"#{inspect(&1.module)} (#{&1.reason})")

  # -- internals -----------------------------------------------------------------

  # The names in allow:, checked against every operation served here
  # (available or not: a listed operation whose requirement is missing is
  # reported as skipped, not as unknown).
  defp allowed(names) when is_list(names) do
    known = MapSet.new(Registry.list(), fn {meta, _} -> meta.name end)
    texts = Enum.map(names, &name_text/1)

    case texts |> Enum.reject(&MapSet.member?(known, &1)) |> Enum.uniq() |> Enum.sort() do
      [] -> {:ok, MapSet.new(texts)}
      unknown -> {:error, {:unknown_operations, unknown}}
    end
  end

  defp allowed(other), do: {:error, {:unknown_operations, [name_text(other)]}}

  defp name_text(name) when is_binary(name), do: name
  defp name_text(name) when is_atom(name), do: Atom.to_string(name)
  defp name_text(other), do: inspect(other, limit: 5)

  defp settings(opts) do
    deadline = Keyword.get(opts, :deadline_ms, Face.default_deadline_ms())
    authorize = Keyword.get(opts, :authorize)

    cond do
      not (is_integer(deadline) and deadline in 1..@max_deadline_ms) ->
        {:error,
         {:invalid_option, :deadline_ms,
          "must be an integer in 1..#{@max_deadline_ms} (under Arsenal's 5 s call timeout), " <>
            "got: #{inspect(deadline)}"}}

      not (authorize == nil or is_function(authorize, 1) or
               match?({m, f} when is_atom(m) and is_atom(f), authorize)) ->
        {:error,
         {:invalid_option, :authorize,
          "must be nil, a function of one argument or {module, function}, got: " <>
            inspect(authorize, limit: 5)}}

      true ->
        {:ok, %{deadline_ms: deadline, authorize: authorize}}
    end
  end

  # Registered without being listed: reads that change nothing and cannot
  # hold a secret.
  defp by_default?(meta), do: not meta.mutating and meta.scope == :read

  defp register_into(registry, read_only, allow) do
    held = held(registry)
    routes = routes(registry)
    report = %{registry: registry, registered: [], names: %{}, skipped: [], failed: []}

    Registry.list()
    |> Enum.reduce(report, fn {meta, availability}, report ->
      face = Face.of(meta.module)

      cond do
        availability != :ok ->
          {:error, reason} = availability
          add(report, :skipped, %{module: meta.module, reason: reason})

        read_only and meta.mutating ->
          add(report, :skipped, %{
            module: meta.module,
            reason: "mutating operation in read-only mode"
          })

        not by_default?(meta) and not MapSet.member?(allow, meta.name) ->
          kind = if meta.mutating, do: "mutating", else: "sensitive"

          add(report, :skipped, %{
            module: meta.module,
            reason:
              "#{kind} operation (scope #{meta.scope}): registered only when listed, " <>
                "allow: [#{inspect(meta.name)}], behind an authority (see ClusterScope.Arsenal)"
          })

        face == :error ->
          add(report, :skipped, %{
            module: meta.module,
            reason: "no Arsenal face: the module does not `use ClusterScope.Operation`"
          })

        true ->
          {:ok, face} = face
          register_face(report, registry, meta, face, held, routes)
      end
    end)
    |> Map.new(fn
      {key, list} when is_list(list) -> {key, Enum.reverse(list)}
      other -> other
    end)
  end

  defp register_face(report, registry, meta, face, held, routes) do
    name = face.name()
    route = route(face.rest_config())

    cond do
      Map.has_key?(held, name) and held[name] != face ->
        add(report, :failed, %{
          module: meta.module,
          reason: "the name #{inspect(name)} is held by #{inspect(held[name])}: not replaced"
        })

      Map.has_key?(routes, route) and routes[route] != face ->
        add(report, :failed, %{
          module: meta.module,
          reason: "the route #{route_text(route)} is held by #{inspect(routes[route])}"
        })

      true ->
        case safe(fn -> registry.register_operation(face) end) do
          {:ok, %{name: ^name}} ->
            report |> add(:registered, meta.module) |> put_in([:names, meta.module], name)

          :ok ->
            report |> add(:registered, meta.module) |> put_in([:names, meta.module], name)

          {:error, reason} ->
            add(report, :failed, %{module: meta.module, reason: inspect(reason, limit: 10)})

          other ->
            add(report, :failed, %{
              module: meta.module,
              reason: "unexpected reply #{inspect(other, limit: 10)}"
            })
        end
    end
  end

  # name => module of what the registry holds.
  defp held(registry) do
    for %{name: name, module: module} <- operations(registry), into: %{}, do: {name, module}
  end

  # {method, path} => module.
  defp routes(registry) do
    for %{module: module} = info <- operations(registry),
        route = route(Map.get(info, :rest_config)),
        route != nil,
        into: %{},
        do: {route, module}
  end

  defp operations(registry) do
    if function_exported?(registry, :list_operations, 0) do
      case safe(fn -> registry.list_operations() end) do
        list when is_list(list) -> Enum.filter(list, &is_map/1)
        _ -> []
      end
    else
      []
    end
  end

  defp route(%{method: method, path: path}) when is_binary(path),
    do: {method |> to_string() |> String.downcase(), path}

  defp route(_), do: nil

  defp route_text({method, path}), do: "#{String.upcase(method)} #{path}"

  defp face!(module) do
    {:ok, face} = Face.of(module)
    face
  end

  defp safe(fun) do
    fun.()
  catch
    kind, reason -> {:error, "#{kind}: #{inspect(reason, limit: 10)}"}
  end

  defp add(report, key, item), do: Map.update!(report, key, &[item | &1])
end
