defmodule ClusterScope.Arsenal do
  @moduledoc """
  The bridge to a host's Arsenal registry.

  Every ClusterScope operation follows the Arsenal operation contract
  (`rest_config/0`, `validate_params/1`, `execute/1`, `format_response/1`), so
  a host that runs an Arsenal registry can serve them next to its own:

      # in the host, after its Arsenal registry has started
      {:ok, report} = ClusterScope.Arsenal.register_all()

  The registry is found by name: `Arsenal.Registry` (the `arsenal` package)
  or `OTPSupervisor.Core.Arsenal.Registry` (the application Arsenal came
  from), whichever is loaded and running. Pass `registry: Module` to choose.

  ## Read-only by default

  A host's routes do not go through ClusterScope's HTTP layer: no bearer
  token, no Origin check, no read-only setting, no scope. So by default only
  operations of scope `:read` that change nothing are registered (topology,
  health, metrics, process rows, ...). Mutations (kill, send, trace, set
  mode, thresholds: scope `:control`) and `:sensitive` reads (process
  state, trace events and sessions: anything that can hold a secret) are
  registered only when the host names them, after putting its own
  authorisation in front of its routes:

      ClusterScope.Arsenal.register_all(allow: ["kill_process", "get_trace_events"])

  A name in `allow:` that no operation has is an error (a typo must not
  silently leave an operation out, or in). Operations whose requirements
  are missing on this node are not registered and are reported as skipped,
  with the reason, as are the ones left out by default. With
  `read_only: true` mutating operations are skipped even when listed.
  """

  alias ClusterScope.Operation.Registry

  @registries [Arsenal.Registry, OTPSupervisor.Core.Arsenal.Registry]

  @typedoc "What `register_all/1` did."
  @type report :: %{
          registry: module(),
          registered: [module()],
          skipped: [%{module: module(), reason: String.t()}],
          failed: [%{module: module(), reason: String.t()}]
        }

  @doc """
  Registers the available ClusterScope operations into the host's Arsenal
  registry: every non-mutating `:read` operation, plus the mutating and
  `:sensitive` ones named in `:allow`.

  Options: `:registry` (module), `:allow` (operation names, strings or
  atoms; default `[]`), `:read_only` (boolean: no mutation even if listed).
  Returns `{:ok, report}`, `{:error, {:unknown_operations, names}}` when
  `:allow` names an operation that does not exist (nothing is registered
  then), or `{:error, :no_arsenal_registry}` when no registry is loaded and
  running.
  """
  @spec register_all(keyword()) ::
          {:ok, report()}
          | {:error, :no_arsenal_registry}
          | {:error, {:unknown_operations, [String.t()]}}
  def register_all(opts \\ []) do
    with {:ok, allow} <- allowed(Keyword.get(opts, :allow, [])) do
      case Keyword.get_lazy(opts, :registry, &find_registry/0) do
        nil -> {:error, :no_arsenal_registry}
        registry -> {:ok, register_into(registry, Keyword.get(opts, :read_only, false), allow)}
      end
    end
  end

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

  # Registered without being listed: reads that change nothing and cannot
  # hold a secret.
  defp by_default?(meta), do: not meta.mutating and meta.scope == :read

  @doc "The host's Arsenal registry module, when one is loaded and running."
  @spec find_registry() :: module() | nil
  def find_registry do
    Enum.find(@registries, fn module ->
      Code.ensure_loaded?(module) and function_exported?(module, :register_operation, 1) and
        running?(module)
    end)
  end

  defp running?(module) do
    # Registries are GenServers registered under their module name.
    is_pid(Process.whereis(module))
  end

  defp register_into(registry, read_only, allow) do
    report = %{registry: registry, registered: [], skipped: [], failed: []}

    Registry.list()
    |> Enum.reduce(report, fn {meta, availability}, report ->
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
                "allow: [#{inspect(meta.name)}], behind the host's own authorisation"
          })

        true ->
          case safe_register(registry, meta.module) do
            :ok -> add(report, :registered, meta.module)
            {:error, reason} -> add(report, :failed, %{module: meta.module, reason: reason})
          end
      end
    end)
    |> Map.new(fn
      {key, list} when is_list(list) -> {key, Enum.reverse(list)}
      other -> other
    end)
  end

  defp safe_register(registry, module) do
    case registry.register_operation(module) do
      :ok -> :ok
      {:ok, _} -> :ok
      {:error, reason} -> {:error, inspect(reason, limit: 10)}
      other -> {:error, "unexpected reply #{inspect(other, limit: 10)}"}
    end
  catch
    kind, reason -> {:error, "#{kind}: #{inspect(reason, limit: 10)}"}
  end

  defp add(report, key, item), do: Map.update!(report, key, &[item | &1])
end
