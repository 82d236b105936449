defmodule ClusterScope.Trace.Spec do
  @moduledoc """
  What a trace session traces and within which limits, validated before
  anything is switched on.

  A spec names **what**:

    * `process` - one process anywhere in the cluster (`"0.123.0@node"`),
      or `name` - a registered name (on `nodes`, or every node), or
      `horde_name` - a name in a `Horde.Registry` (only when Horde is
      loaded; `horde_registry` says which registry)
    * `module`, `function`, `arity` - a function pattern (`"_"` is a
      wildcard for function and arity), with `return: true` for return
      values and exceptions, and optionally `match_spec` (JSON in the
      `ClusterScope.Procs.Terms` mapping, checked with
      `:erlang.match_spec_test/3`)
    * `messages` - `"send"`, `"receive"` or `"both"`: the messages the
      process sends and receives (needs a process)

  and **within what**: `duration_ms` (default 10 s, at most 10 min),
  `max_events` (default 1,000), `rate` (kept events per second per node,
  default 200), `per_process_rate` (optional), `max_queue` (the tracer's
  mailbox bound, default 5,000: past it the session stops, as redbug's
  `max_queue` does) and `overhead_ceiling` (fraction of one scheduler,
  default 0.05).

  ## Never traced

  Modules that handle the distribution cookie, keys or tokens
  (`:auth`, `:crypto`, `:erl_distribution`, `:dist_util`, `:net_kernel`, the
  distribution carriers `:inet_tcp_dist`, `:inet6_tcp_dist`, `:inet_tls_dist`,
  `:inet6_tls_dist`, `:inet_epmd_dist`, `:erl_epmd`, and the key handling of
  `:public_key` and `:ssl`; see `secret_modules/0`) and ClusterScope's
  own modules (the tracer would trace itself, and its HTTP layer compares
  tokens) are refused even with `force: true`, as are the messages of
  the processes that hold the cookie (`auth`, `net_kernel`, `erl_epmd`, ...),
  by name.
  Whatever else is traced, events are redacted on the traced node
  (`ClusterScope.Trace.Event`).

  ## Refused unless `force: true`

  Every function of `:erlang`, `:lists`, `:io`, `:io_lib`, `:maps`,
  `:ets`, `:gen`, `:gen_server`, `:proc_lib`, `:timer`, `Kernel`, `Enum`
  and the like with a wildcard function or arity: they are called millions
  of times a second by the VM itself, and even throttled, switching such a
  pattern on costs every process a trace check per call. No atom is created from a spec: module and function names
  must already exist.
  """

  alias ClusterScope.ProcessRef
  alias ClusterScope.Procs.Terms

  @hot_modules [
    :erlang,
    :lists,
    :io,
    :io_lib,
    :maps,
    :ets,
    :gen,
    :gen_server,
    :gen_statem,
    :proc_lib,
    :timer,
    :string,
    :unicode,
    :binary,
    :prim_inet,
    :inet,
    Kernel,
    Enum,
    Map,
    List,
    String,
    Keyword,
    GenServer,
    Process,
    IO
  ]

  # Modules whose arguments, return values and state are secrets: the
  # distribution cookie (auth, the handshake in dist_util, net_kernel and
  # the carriers that run it), keys and tokens being compared or derived
  # (crypto, public_key, ssl's key handling). Never traced, even forced:
  # a session on crypto:hash_equals/2 recorded the bearer token itself.
  @secret_modules [
    :auth,
    :crypto,
    :erl_distribution,
    :dist_util,
    :net_kernel,
    :inet_tcp_dist,
    :inet6_tcp_dist,
    :inet_tls_dist,
    :inet6_tls_dist,
    :inet_epmd_dist,
    :erl_epmd,
    :public_key,
    :ssl_config,
    :ssl_handshake,
    :tls_handshake,
    :ssl_cipher
  ]

  # Processes whose messages carry the cookie: never traced by name.
  @secret_processes [:auth, :net_kernel, :erl_epmd, :ssl_dist_sup, :ssl_pem_cache]

  @defaults %{
    duration_ms: 10_000,
    max_events: 1_000,
    rate: 200,
    per_process_rate: nil,
    max_queue: 5_000,
    overhead_ceiling: 0.05,
    return: false,
    force: false,
    messages: nil
  }

  @typedoc "A validated spec."
  @type t :: %{
          optional(:process) => ProcessRef.t(),
          optional(:name) => atom(),
          optional(:mfa) => {module(), atom() | :_, non_neg_integer() | :_},
          optional(:match_spec) => list() | nil,
          required(:nodes) => [node()],
          required(:duration_ms) => pos_integer(),
          required(:max_events) => pos_integer(),
          required(:rate) => pos_integer(),
          required(:max_queue) => pos_integer(),
          required(:overhead_ceiling) => float(),
          required(:force) => boolean(),
          optional(atom()) => term()
        }

  @doc "The default limits."
  @spec defaults() :: map()
  def defaults, do: @defaults

  @doc """
  Checks the params of `TraceProcess` (already type-checked by the
  operation's schema) and builds a spec: `{:ok, spec}` or
  `{:error, [%{field:, message:}]}` naming every bad field.
  """
  @spec build(map(), [node()]) :: {:ok, t()} | {:error, [map()]}
  def build(params, known_nodes) do
    params = Map.merge(@defaults, drop_nils(params))

    checks = [
      &target/2,
      &mfa/2,
      &match_spec/2,
      &messages/2,
      &something/2,
      &nodes/2,
      &danger/2,
      &rate_cap/2
    ]

    Enum.reduce(checks, {%{}, []}, fn check, {spec, errors} ->
      case check.(params, Map.put(spec, :known_nodes, known_nodes)) do
        {:ok, more} -> {Map.merge(spec, more), errors}
        {:error, field, message} -> {spec, [%{field: field, message: message} | errors]}
      end
    end)
    |> case do
      {spec, []} ->
        limits =
          Map.take(params, [
            :duration_ms,
            :max_events,
            :rate,
            :per_process_rate,
            :max_queue,
            :overhead_ceiling,
            :return,
            :force
          ])

        {:ok, spec |> Map.delete(:known_nodes) |> Map.merge(limits)}

      {_, errors} ->
        {:error, Enum.reverse(errors)}
    end
  end

  # The node's cap (`trace_max_rate`; 5,000 in the production profile).
  defp rate_cap(%{rate: rate}, _) do
    cap = ClusterScope.Config.get(:trace_max_rate) || 100_000

    if rate <= cap,
      do: {:ok, %{}},
      else:
        {:error, "rate",
         "must be at most #{cap} events/s here (config :cluster_scope, trace_max_rate)"}
  end

  defp drop_nils(map), do: map |> Enum.reject(fn {_, v} -> is_nil(v) end) |> Map.new()

  defp target(%{process: %ProcessRef{} = ref}, _), do: {:ok, %{process: ref}}

  defp target(%{name: name}, _) when is_binary(name) do
    case existing_atom(name) do
      {:ok, atom} -> {:ok, %{name: atom}}
      :error -> {:error, "name", "no process is registered as #{inspect(name)} (no such atom)"}
    end
  end

  defp target(%{horde_name: name} = params, _) when is_binary(name) do
    cond do
      not Code.ensure_loaded?(Horde.Registry) ->
        {:error, "horde_name", "Horde is not loaded on this node"}

      not is_binary(params[:horde_registry]) ->
        {:error, "horde_registry", "is required with horde_name"}

      true ->
        case existing_atom(params.horde_registry) do
          {:ok, registry} -> {:ok, %{horde: {registry, name}}}
          :error -> {:error, "horde_registry", "no such registry"}
        end
    end
  end

  defp target(_, _), do: {:ok, %{}}

  defp mfa(%{module: mod} = params, _) when is_binary(mod) do
    with {:ok, module} <- existing_module(mod),
         {:ok, fun} <- wildcard_atom(params[:function] || "_", "function"),
         {:ok, arity} <- arity(params[:arity]) do
      {:ok, %{mfa: {module, fun, arity}}}
    end
  end

  defp mfa(%{function: f}, _) when is_binary(f),
    do: {:error, "module", "is required with function"}

  defp mfa(_, _), do: {:ok, %{}}

  defp match_spec(%{match_spec: ms} = params, _) when not is_nil(ms) do
    with {:ok, term} <- from_json(ms),
         true <- is_list(term) || {:error, "match_spec", "must be a list of match clauses"},
         :ok <- safe_actions(term, params.force),
         {:ok, _, _, _} <- test_ms(term) do
      {:ok, %{match_spec: maybe_return(term, params.return)}}
    else
      {:error, field, message} ->
        {:error, field, message}

      {:error, errors} ->
        {:error, "match_spec", "is not a valid trace match spec: #{inspect(errors)}"}
    end
  end

  defp match_spec(params, _) do
    ms = if params.return, do: [{:_, [], [{:exception_trace}]}], else: true
    {:ok, %{match_spec: ms}}
  end

  # Actions that change the node's trace state for everyone (flags of other
  # processes, the trace control word the tracers pause with, sequential
  # tracing) or dump whole processes: refused unless forced.
  @refused_actions [
    :set_tcw,
    :trace,
    :enable_trace,
    :disable_trace,
    :silent,
    :set_seq_token,
    :process_dump
  ]

  defp safe_actions(_ms, true), do: :ok

  defp safe_actions(ms, false) do
    case find_action(ms) do
      nil ->
        :ok

      action ->
        {:error, "match_spec",
         "the action #{action} changes the node's trace state for every session (force: true to insist)"}
    end
  end

  defp find_action(tuple) when is_tuple(tuple) and tuple_size(tuple) > 0 do
    case elem(tuple, 0) do
      action when action in @refused_actions -> action
      _ -> tuple |> Tuple.to_list() |> find_action()
    end
  end

  defp find_action(list) when is_list(list), do: Enum.find_value(list, &find_action/1)
  defp find_action(_), do: nil

  defp maybe_return(ms, false), do: ms

  defp maybe_return(ms, true) do
    Enum.map(ms, fn {head, guards, body} -> {head, guards, body ++ [{:exception_trace}]} end)
  end

  defp from_json(ms) do
    case Terms.from_json(ms, "match_spec") do
      {:ok, term} -> {:ok, term}
      {:error, message} -> {:error, "match_spec", message}
    end
  end

  defp test_ms(term) do
    :erlang.match_spec_test([], term, :trace)
  rescue
    _ -> {:error, [:badarg]}
  end

  defp messages(%{messages: nil}, _), do: {:ok, %{}}

  defp messages(%{messages: which} = params, _) do
    # The operation's schema gives atoms; a direct Elixir call may give text.
    flags =
      case which do
        w when w in [:send, "send"] -> [:send]
        w when w in [:receive, "receive"] -> [:receive]
        w when w in [:both, "both"] -> [:send, :receive]
        _ -> :error
      end

    cond do
      flags == :error ->
        {:error, "messages", "must be send, receive or both, got: #{inspect(which, limit: 5)}"}

      params[:process] || params[:name] || params[:horde_name] ->
        {:ok, %{messages: flags}}

      true ->
        {:error, "messages", "needs a process (process, name or horde_name)"}
    end
  end

  defp something(params, _) do
    if params[:module] || params[:messages],
      do: {:ok, %{}},
      else: {:error, "module", "say what to trace: a function (module) or messages"}
  end

  # The nodes where a tracer runs: the process's node, else `nodes`, else all.
  defp nodes(%{process: %ProcessRef{node: node}}, _), do: {:ok, %{nodes: [node]}}

  defp nodes(params, %{known_nodes: known}) do
    # Without a list, "all nodes": the session also follows nodes that join
    # while it runs (ClusterScope.Trace.Sessions starts a tracer there).
    case params[:nodes] do
      nil -> {:ok, %{nodes: known, all_nodes: true}}
      [] -> {:ok, %{nodes: known, all_nodes: true}}
      nodes when is_list(nodes) -> {:ok, %{nodes: Enum.uniq(nodes)}}
    end
  end

  defp danger(params, spec) do
    cond do
      protected_name?(spec[:name]) ->
        {:error, "name",
         "the messages of #{inspect(spec[:name])} carry the node's secrets: never traced, even with force: true"}

      spec[:mfa] == nil ->
        {:ok, %{}}

      true ->
        {mod, fun, arity} = spec.mfa

        cond do
          own_module?(mod) ->
            {:error, "module",
             "#{inspect(mod)} is part of ClusterScope (the tracer would trace itself, and it handles tokens): never traced, even with force: true"}

          mod in @secret_modules ->
            {:error, "module",
             "#{inspect(mod)} handles the distribution cookie, keys or tokens: its arguments are secrets, so it is never traced, even with force: true"}

          params.force ->
            {:ok, %{}}

          mod in @hot_modules and (fun == :_ or arity == :_) ->
            {:error, "module",
             "every call of #{inspect(mod)}#{wild(fun, arity)} is too hot to trace: name one function and arity, or force: true"}

          true ->
            {:ok, %{}}
        end
    end
  end

  defp protected_name?(nil), do: false
  defp protected_name?(name), do: name in @secret_processes or own_module?(name)

  @doc """
  Whether a process (on this node) is never traced: registered under a name
  whose messages carry secrets, or started by one of ClusterScope's modules.
  Checked by the tracer on the traced node, where a pid target is known.
  """
  @spec protected_process?(pid()) :: boolean()
  def protected_process?(pid) when is_pid(pid) do
    name =
      case Process.info(pid, :registered_name) do
        {:registered_name, name} when is_atom(name) -> name
        _ -> nil
      end

    protected_name?(name) or own_initial_call?(pid)
  end

  defp own_initial_call?(pid) do
    case :proc_lib.initial_call(pid) do
      {mod, _, _} when is_atom(mod) -> own_module?(mod)
      _ -> false
    end
  catch
    _, _ -> false
  end

  @doc "The modules never traced, even with `force: true` (besides ClusterScope's own)."
  @spec secret_modules() :: [module()]
  def secret_modules, do: @secret_modules

  defp wild(:_, _), do: " (any function)"
  defp wild(_, :_), do: " (any arity)"
  defp wild(_, _), do: ""

  defp own_module?(mod) do
    text = Atom.to_string(mod)
    text == "Elixir.ClusterScope" or String.starts_with?(text, "Elixir.ClusterScope.")
  end

  defp existing_module(text) do
    candidates = if text =~ ~r/^[A-Z]/, do: ["Elixir." <> text, text], else: [text]

    Enum.find_value(
      candidates,
      {:error, "module", "#{inspect(text)} is not a known module"},
      fn t ->
        case existing_atom(t) do
          {:ok, atom} -> {:ok, atom}
          :error -> nil
        end
      end
    )
  end

  defp wildcard_atom("_", _field), do: {:ok, :_}

  defp wildcard_atom(text, field) do
    case existing_atom(text) do
      {:ok, atom} -> {:ok, atom}
      :error -> {:error, field, "#{inspect(text)} is not a known function name"}
    end
  end

  defp arity(nil), do: {:ok, :_}
  defp arity("_"), do: {:ok, :_}
  defp arity(n) when is_integer(n) and n >= 0 and n <= 255, do: {:ok, n}

  defp arity(text) when is_binary(text) do
    case Integer.parse(text) do
      {n, ""} when n >= 0 and n <= 255 -> {:ok, n}
      _ -> {:error, "arity", "must be 0..255 or \"_\""}
    end
  end

  defp arity(_), do: {:error, "arity", "must be 0..255 or \"_\""}

  defp existing_atom(text) do
    {:ok, String.to_existing_atom(text)}
  rescue
    ArgumentError -> :error
  end
end
