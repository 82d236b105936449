defmodule ClusterScope.Script do
  @moduledoc """
  A small API for automated distributed checks, run by
  `mix cluster_scope.run script.exs [--node NODE --cookie COOKIE]`: after a
  deploy, in CI against a staging cluster, or from cron.

  The script is plain Elixir with this module imported. Operations run on
  the node the command is attached to (this one, or `--node`); each check
  prints one line as it completes, and the command exits 0 when every check
  passed, 1 when one failed, 2 when the script itself raised outside a check
  or could not be read.

      # checks/after_deploy.exs
      wait_until("every node is up", 30_000, fn -> length(nodes_up()) == 4 end)
      assert_healthy()
      assert_no_alerts(:critical)
      assert_no_process(%{min_queue: 10_000})

      check("the cart registry has 4 members", fn ->
        %{registries: [reg]} = run!("horde_registry_inspect", %{})
        length(reg.members) == 4
      end)

  Every call is an operation with its usual cost and deadline (see the
  operations reference); a script never does more than it asks.
  """

  alias ClusterScope.Operation.Runner

  defmodule Failure do
    @moduledoc "Raised by `ClusterScope.Script.run!/2` when the operation fails."
    defexception [:error]

    @impl true
    def message(%{error: %ClusterScope.Error{code: code, message: message}}),
      do: "#{code}: #{message}"

    def message(%{error: other}), do: inspect(other)
  end

  @key __MODULE__

  @doc false
  # Called by the command before the script: where operations run and
  # where lines go. State lives in the script's own process.
  @spec begin(:local | node(), (iodata() -> any())) :: :ok
  def begin(target, emit) do
    Process.put({@key, :target}, target)
    Process.put({@key, :emit}, emit)
    Process.put({@key, :results}, [])
    :ok
  end

  @doc false
  @spec results() :: [{:pass | :fail, String.t(), String.t() | nil}]
  def results, do: Process.get({@key, :results}, []) |> Enum.reverse()

  @doc "Runs an operation: `{:ok, data}` or `{:error, %ClusterScope.Error{}}`."
  @spec run(String.t(), map()) :: {:ok, term()} | {:error, ClusterScope.Error.t() | String.t()}
  def run(name, params \\ %{}) do
    case ClusterScope.CLI.remote(target(), Runner, :run, [name, params]) do
      {:ok, {:ok, data, _meta}} -> {:ok, data}
      {:ok, {:error, error, _meta}} -> {:error, error}
      {:error, message} -> {:error, message}
    end
  end

  @doc "Runs an operation and answers its data; raises `Failure` when it fails."
  @spec run!(String.t(), map()) :: term()
  def run!(name, params \\ %{}) do
    case run(name, params) do
      {:ok, data} -> data
      {:error, error} -> raise Failure, error: error
    end
  end

  @doc "The cluster's topology (`cluster_topology`)."
  @spec topology() :: map()
  def topology, do: run!("cluster_topology")

  @doc "The cluster's health (`cluster_health`)."
  @spec health() :: map()
  def health, do: run!("cluster_health")

  @doc "The nodes whose status is `:up`."
  @spec nodes_up() :: [node()]
  def nodes_up, do: for(%{status: :up, node: n} <- topology().nodes, do: n)

  @doc "A page of the cluster-wide process list (`process_list` parameters)."
  @spec processes(map()) :: [map()]
  def processes(params \\ %{}), do: run!("process_list", params).processes

  @doc """
  Records a check. `condition` is a boolean or a function returning one (or
  `{:error, reason}`); a raise inside the function fails the check with its
  message. Answers whether it passed.
  """
  @spec check(String.t(), boolean() | (() -> boolean() | {:error, term()})) :: boolean()
  def check(description, condition) do
    {outcome, detail} =
      try do
        case if(is_function(condition, 0), do: condition.(), else: condition) do
          true -> {:pass, nil}
          false -> {:fail, nil}
          nil -> {:fail, nil}
          {:error, reason} -> {:fail, reason_text(reason)}
          other -> {:fail, "expected true or false, got #{inspect(other, limit: 5)}"}
        end
      rescue
        e -> {:fail, Exception.message(e)}
      end

    record(outcome, description, detail)
    outcome == :pass
  end

  @doc "Checks that the cluster's health is `healthy` (connectivity, alerts, nodes answering)."
  @spec assert_healthy() :: boolean()
  def assert_healthy do
    check("cluster is healthy", fn ->
      h = health()

      if h.status == :healthy,
        do: true,
        else:
          {:error,
           "status #{h.status}, connectivity #{h.connectivity.status}, #{length(h.alerts)} alert(s), #{length(h.node_errors)} node(s) not answering"}
    end)
  end

  @doc "Checks that exactly `count` nodes are up (this node included)."
  @spec assert_nodes(pos_integer()) :: boolean()
  def assert_nodes(count) do
    check("#{count} nodes up", fn ->
      up = nodes_up()

      if length(up) == count,
        do: true,
        else: {:error, "#{length(up)} up: #{Enum.map_join(up, ", ", &to_string/1)}"}
    end)
  end

  @doc "Checks that no node has an active alert at `severity` (`:warning` includes critical)."
  @spec assert_no_alerts(:warning | :critical) :: boolean()
  def assert_no_alerts(severity \\ :critical) do
    check("no #{severity} alerts", fn ->
      alerts = run!("cluster_alerts").alerts

      bad =
        if severity == :critical,
          do: Enum.filter(alerts, &(&1.severity == :critical)),
          else: alerts

      case bad do
        [] -> true
        list -> {:error, Enum.map_join(list, "; ", &"#{&1.node}: #{&1.message}")}
      end
    end)
  end

  @doc """
  Checks that no process matches `filters` (`process_list` filters, e.g.
  `%{min_queue: 10_000}` or `%{application: "my_app", min_memory: 100_000_000}`).
  """
  @spec assert_no_process(map()) :: boolean()
  def assert_no_process(filters) do
    check("no process with #{inspect(filters)}", fn ->
      case processes(Map.merge(%{limit: 5}, filters)) do
        [] ->
          true

        rows ->
          {:error,
           Enum.map_join(rows, "; ", &"#{&1.pid} (#{&1[:registered_name] || &1[:initial_call]})")}
      end
    end)
  end

  @doc """
  Polls `condition` (a function returning a boolean) every 250 ms until it
  holds or `timeout_ms` passes; records the outcome as a check.
  """
  @spec wait_until(String.t(), pos_integer(), (() -> boolean())) :: boolean()
  def wait_until(description, timeout_ms, condition) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms

    check(description, fn -> poll(condition, deadline, timeout_ms) end)
  end

  defp poll(condition, deadline, timeout_ms) do
    ok? =
      try do
        condition.() == true
      rescue
        _ -> false
      end

    cond do
      ok? ->
        true

      System.monotonic_time(:millisecond) >= deadline ->
        {:error, "not true within #{timeout_ms} ms"}

      true ->
        Process.sleep(250)
        poll(condition, deadline, timeout_ms)
    end
  end

  defp record(outcome, description, detail) do
    Process.put({@key, :results}, [
      {outcome, description, detail} | Process.get({@key, :results}, [])
    ])

    tag = if outcome == :pass, do: "ok  ", else: "FAIL"
    emit = Process.get({@key, :emit}, &IO.write/1)
    emit.([tag, " ", description, if(detail, do: [": ", detail], else: []), "\n"])
  end

  defp target, do: Process.get({@key, :target}, :local)

  defp reason_text(%ClusterScope.Error{code: code, message: m}), do: "#{code}: #{m}"
  defp reason_text(text) when is_binary(text), do: text
  defp reason_text(other), do: inspect(other, limit: 10)
end
