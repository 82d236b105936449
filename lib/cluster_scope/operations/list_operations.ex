defmodule ClusterScope.Operations.ListOperations do
  @moduledoc """
  `GET /api/v1/operations`: every operation this node serves, with its route,
  parameters and availability (an operation whose requirement is missing is
  listed with the reason instead of failing at call time).

  Cheap: reads the registry's cached table.
  """

  use ClusterScope.Operation, name: "list_operations"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/operations",
      summary: "List the operations this node serves",
      parameters: [
        %{
          name: :include_unavailable,
          type: :boolean,
          required: false,
          default: true,
          location: :query,
          description: "include operations whose requirements are missing"
        }
      ],
      responses: %{200 => %{description: "the operations"}}
    }
  end

  @impl true
  def execute(%{include_unavailable: include?} = params) do
    # A read-only endpoint does not serve control operations: do not list them.
    read_only = get_in(params, [:__context__, :read_only]) || false

    operations =
      for {meta, availability} <- ClusterScope.Operation.Registry.list(),
          include? or availability == :ok,
          not (read_only and meta.scope == :control) do
        describe(meta, availability)
      end

    {:ok, %{operations: operations, count: length(operations)}}
  end

  @doc false
  def describe(meta, availability) do
    %{
      name: meta.name,
      version: meta.version,
      module: inspect(meta.module),
      method: meta.method |> Atom.to_string() |> String.upcase(),
      path: meta.path,
      summary: meta.summary,
      mutating: meta.mutating,
      scope: meta.scope,
      partition: Map.get(meta, :partition, :anywhere),
      idempotent: Map.get(meta, :idempotent, not meta.mutating),
      requires: meta.requires,
      available: availability == :ok,
      unavailable_reason: with({:error, reason} <- availability, do: reason, else: (_ -> nil)),
      parameters:
        Enum.map(meta.parameters, fn p ->
          p
          |> Map.take([
            :name,
            :type,
            :required,
            :location,
            :description,
            :default,
            :min,
            :max,
            :values,
            :items
          ])
          |> Map.update!(:name, &Atom.to_string/1)
        end)
    }
  end
end
