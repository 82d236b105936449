defmodule ClusterScope.Test.ArsenalStandIn do
  @moduledoc false
  # A stand-in for a host's Arsenal registry, for runs without the real
  # `arsenal` package (CI). It behaves as `Arsenal.Registry` of arsenal 0.1.0
  # (nshkrdotcom/arsenal at 1d96ca9) does, in every point ClusterScope relies
  # on:
  #
  #   * registration (`build_operation_info/1`): the module is loaded, it
  #     exports `name/0`, `category/0` and `execute/1`, else
  #     `{:error, {:invalid_operation, :missing_callbacks}}`; then
  #     `description/0`, `params_schema/0`, `metadata/0`, `rest_config/0`
  #     are called, and a raise in any of them (or a module that cannot be
  #     loaded) is `{:error, {:module_error, exception}}`; the entry is kept
  #     under `name()` in a set, replacing whatever had that name;
  #   * `execute_operation/3`: in the registry's process, under the caller's
  #     5 s `GenServer.call/2` timeout: the entry by name
  #     (`{:error, :operation_not_found}`), `validate_params/1` when exported
  #     (a raise is `{:error, exception}`), `authorize/2` when exported (a
  #     raise is `{:error, exception}`), then `execute/1`, whose answer is
  #     the reply;
  #   * `list_operations/0,1`, `get_operation/1` (atoms only),
  #     `unregister_operation/1`.
  #
  # The `:arsenal`-tagged tests check that this stand-in and the real
  # registry answer the same for the same modules.
  defmacro __using__(_) do
    quote do
      use GenServer

      def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

      def list_operations(category \\ nil),
        do: GenServer.call(__MODULE__, {:list_operations, category})

      def get_operation(name) when is_atom(name),
        do: GenServer.call(__MODULE__, {:get_operation, name})

      def register_operation(module) when is_atom(module),
        do: GenServer.call(__MODULE__, {:register_operation, module})

      def unregister_operation(name) when is_atom(name),
        do: GenServer.call(__MODULE__, {:unregister_operation, name})

      def execute_operation(name, params, context \\ %{}),
        do: GenServer.call(__MODULE__, {:execute_operation, name, params, context})

      @impl true
      def init(_opts) do
        {:ok, :ets.new(__MODULE__, [:set, :protected])}
      end

      @impl true
      def handle_call({:list_operations, category}, _from, table) do
        infos = for {_, info} <- :ets.tab2list(table), do: info
        {:reply, Enum.filter(infos, &(category == nil or &1.category == category)), table}
      end

      def handle_call({:get_operation, name}, _from, table) do
        case :ets.lookup(table, name) do
          [{^name, info}] -> {:reply, {:ok, info}, table}
          [] -> {:reply, {:error, :not_found}, table}
        end
      end

      def handle_call({:register_operation, module}, _from, table) do
        case ClusterScope.Test.ArsenalStandIn.operation_info(module) do
          {:ok, info} ->
            :ets.insert(table, {info.name, info})
            {:reply, {:ok, info}, table}

          error ->
            {:reply, error, table}
        end
      end

      def handle_call({:unregister_operation, name}, _from, table) do
        case :ets.lookup(table, name) do
          [{^name, _}] ->
            :ets.delete(table, name)
            {:reply, :ok, table}

          [] ->
            {:reply, {:error, :not_found}, table}
        end
      end

      def handle_call({:execute_operation, name, params, context}, _from, table) do
        reply =
          case :ets.lookup(table, name) do
            [{^name, info}] -> ClusterScope.Test.ArsenalStandIn.run(info.module, params, context)
            [] -> {:error, :operation_not_found}
          end

        {:reply, reply, table}
      end
    end
  end

  @doc false
  def operation_info(module) do
    Code.ensure_loaded!(module)

    if function_exported?(module, :name, 0) and function_exported?(module, :category, 0) and
         function_exported?(module, :execute, 1) do
      {:ok,
       %{
         module: module,
         name: module.name(),
         category: module.category(),
         description: module.description(),
         schema: module.params_schema(),
         metadata: module.metadata(),
         rest_config: module.rest_config()
       }}
    else
      {:error, {:invalid_operation, :missing_callbacks}}
    end
  rescue
    error -> {:error, {:module_error, error}}
  end

  @doc false
  def run(module, params, context) do
    with {:ok, valid} <- optional(module, :validate_params, [params], {:ok, params}),
         :ok <- optional(module, :authorize, [valid, context], :ok) do
      module.execute(valid)
    end
  end

  defp optional(module, fun, args, default) do
    if function_exported?(module, fun, length(args)),
      do: apply(module, fun, args),
      else: default
  rescue
    error -> {:error, error}
  end
end

defmodule ClusterScope.Test.ArsenalStandIn.Registry do
  @moduledoc false
  use ClusterScope.Test.ArsenalStandIn
end

defmodule ClusterScope.Test.SlowOp do
  @moduledoc false
  # An operation allowed 10 s by its own timeout that takes 6 s: past
  # Arsenal's 5 s registry call.
  use ClusterScope.Operation, name: "test_slow", timeout: 10_000

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/test/slow",
      summary: "Takes 6 s",
      parameters: [],
      responses: %{}
    }
  end

  @impl true
  def execute(_params) do
    Process.sleep(6_000)
    {:ok, %{done: true}}
  end
end
