defmodule ClusterScope.TestOps do
  @moduledoc false
  # Operations defined only for tests: every parameter type, failures of each
  # class, two versions of one route, a missing requirement, a mutating one.

  defmodule AllTypes do
    @moduledoc false
    use ClusterScope.Operation, name: "test_all_types"

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/types/:target",
        summary: "Echoes every parameter type",
        parameters: [
          %{name: :target, type: :node, required: true, location: :path},
          %{name: :s, type: :string, min_length: 2, max_length: 5, location: :query},
          %{name: :i, type: :integer, min: 1, max: 10, default: 3, location: :query},
          %{name: :f, type: :float, min: 0.0, max: 1.0, location: :query},
          %{name: :b, type: :boolean, location: :query},
          %{name: :a, type: :array, items: :integer, max_length: 3, location: :query},
          %{name: :m, type: :map, location: :query},
          %{name: :e, type: :enum, values: [:asc, :desc], location: :query},
          %{name: :p, type: :pid, location: :query}
        ],
        responses: %{200 => %{description: "the params"}}
      }
    end

    @impl true
    def execute(params), do: {:ok, Map.delete(params, :__context__)}

    @impl true
    def format_response(params) do
      Map.new(params, fn
        {k, %ClusterScope.ProcessRef{} = p} -> {k, to_string(p)}
        kv -> kv
      end)
    end
  end

  defmodule Fail do
    @moduledoc false
    use ClusterScope.Operation, name: "test_fail", timeout: 300

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/fail/:how",
        summary: "Fails in the way it is asked to",
        parameters: [
          %{
            name: :how,
            type: :enum,
            values: ~w(raise exit throw error not_found sleep bad_return partition)a,
            required: true,
            location: :path
          }
        ],
        responses: %{}
      }
    end

    @impl true
    def execute(%{how: :raise}), do: raise(ArgumentError, "boom")
    def execute(%{how: :exit}), do: exit(:bye)
    def execute(%{how: :throw}), do: throw(:ball)
    def execute(%{how: :error}), do: {:error, {:strange, self()}}
    def execute(%{how: :not_found}), do: {:error, {:not_found, "no such thing"}}
    def execute(%{how: :partition}), do: {:error, :partition}
    def execute(%{how: :bad_return}), do: :what
    def execute(%{how: :sleep}), do: Process.sleep(:infinity)
  end

  defmodule EchoV1 do
    @moduledoc false
    use ClusterScope.Operation, name: "test_echo", version: 1

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/echo",
        summary: "Echo, first version",
        parameters: [%{name: :text, type: :string, required: true, location: :query}],
        responses: %{200 => %{description: "echo"}}
      }
    end

    @impl true
    def execute(%{text: text}), do: {:ok, %{echo: text, version: 1}}
  end

  defmodule EchoV2 do
    @moduledoc false
    use ClusterScope.Operation, name: "test_echo", version: 2

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/echo",
        summary: "Echo, second version (upper case)",
        parameters: [%{name: :text, type: :string, required: true, location: :query}],
        responses: %{200 => %{description: "echo"}}
      }
    end

    @impl true
    def execute(%{text: text}), do: {:ok, %{echo: String.upcase(text), version: 2}}
  end

  defmodule NeedsHorde do
    @moduledoc false
    use ClusterScope.Operation, name: "test_needs_horde", requires: [:horde]

    @impl true
    def rest_config do
      %{
        method: :get,
        path: "/api/v1/test/horde",
        summary: "Needs Horde",
        parameters: [],
        responses: %{}
      }
    end

    @impl true
    def execute(_), do: {:ok, %{}}
  end

  defmodule Mutate do
    @moduledoc false
    use ClusterScope.Operation, name: "test_mutate"

    @impl true
    def rest_config do
      %{
        method: :post,
        path: "/api/v1/test/mutate",
        summary: "A mutating operation",
        parameters: [
          %{name: :value, type: :integer, required: true, location: :body},
          %{name: :tags, type: :array, items: :string, location: :body}
        ],
        responses: %{200 => %{description: "done"}}
      }
    end

    @impl true
    def execute(params), do: {:ok, params |> Map.delete(:__context__) |> Map.put(:mutated, true)}
  end

  @doc "Registers the test operations; unregisters them on exit."
  def register(modules \\ [AllTypes, Fail, EchoV1, EchoV2, NeedsHorde, Mutate]) do
    for m <- modules, do: {:ok, _} = ClusterScope.register_operation(m)
    ExUnit.Callbacks.on_exit(fn -> Enum.each(modules, &ClusterScope.unregister_operation/1) end)
    :ok
  end
end
