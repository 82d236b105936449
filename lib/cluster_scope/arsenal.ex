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

  Operations whose requirements are missing on this node are not registered
  and are reported as skipped, with the reason. In read-only mode
  (`read_only: true`) mutating operations are skipped too.
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
  Registers every available ClusterScope operation into the host's Arsenal
  registry. Options: `:registry` (module), `:read_only` (boolean).
  Returns `{:ok, report}`, or `{:error, :no_arsenal_registry}` when no
  registry is loaded and running.
  """
  @spec register_all(keyword()) :: {:ok, report()} | {:error, :no_arsenal_registry}
  def register_all(opts \\ []) do
    case Keyword.get_lazy(opts, :registry, &find_registry/0) do
      nil -> {:error, :no_arsenal_registry}
      registry -> {:ok, register_into(registry, Keyword.get(opts, :read_only, false))}
    end
  end

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

  defp register_into(registry, read_only) do
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
