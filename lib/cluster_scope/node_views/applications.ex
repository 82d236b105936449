defmodule ClusterScope.NodeViews.Applications do
  @moduledoc """
  The applications of every node (name, version, description, started or
  only loaded) and the differences between nodes: an application missing
  on a node, loaded at different versions, or started on some nodes and
  only loaded on others. That is what a half-finished rolling deploy looks
  like.

  ## Cost

  Two OTP calls per node, sent to every node at once:
  `:application.loaded_applications/0` (a read of the application
  controller's ETS table) and `:application.which_applications/1` (a call
  to the node's application controller, bounded by the node timeout). Both
  are OTP's own, so a node without ClusterScope (agentless) answers too.
  The comparison runs in the Rust core (`cluster_scope_core::drift`), over
  a few dozen applications per node: microseconds.

  ## Protects against

  Each node is bounded by the node timeout (`which_applications` waits for
  an application controller busy starting an application: such a node is in
  `node_errors`, the others answer). The rows are bounded by `limit` (at
  most 5,000) with their total; differences are listed in full (one per
  application name, so at most the number of distinct applications).
  Applications are named by the nodes themselves (atoms that already exist
  on them); nothing from a request becomes an atom.
  """

  alias ClusterScope.{Fanout, Native}

  @max_limit 5_000

  @doc "The largest `limit` accepted."
  @spec max_limit() :: pos_integer()
  def max_limit, do: @max_limit

  @doc """
  The applications of `opts.nodes` (default: this node and every connected
  one). Options: `:nodes`, `:application` (only this name), `:only_differences`
  (no rows, differences only), `:limit` (rows, default 1,000), `:timeout`.

  Returns `{:ok, %{nodes:, applications:, applications_total:,
  differences:, node_errors:}}`. A row is `%{node:, application:, version:,
  description:, status: :started | :loaded}`; a difference is
  `%{application:, kinds:, versions: [%{version:, nodes:}], missing_on:,
  started_on:, loaded_only_on:}` with `kinds` among `:missing`,
  `:versions`, `:status`.
  """
  @spec cluster(map()) :: {:ok, map()} | {:error, term()}
  def cluster(opts \\ %{}) do
    timeout = Map.get(opts, :timeout) || Fanout.default_timeout()
    limit = min(Map.get(opts, :limit) || 1_000, @max_limit)
    {nodes, skipped} = targets(Map.get(opts, :nodes))

    which =
      Task.async(fn ->
        Fanout.multicall(nodes, :application, :which_applications, [timeout], timeout)
      end)

    {loaded, errors1} = Fanout.multicall(nodes, :application, :loaded_applications, [], timeout)
    {started, errors2} = Task.await(which, timeout + 1_000)

    started = Map.new(started)
    errors = merge_errors(errors1, errors2)

    per_node =
      for {node, apps} <- loaded, Map.has_key?(started, node), is_list(apps) do
        running = started |> Map.fetch!(node) |> names()
        {node, Enum.flat_map(apps, &row(node, &1, running))}
      end

    per_node = filter_application(per_node, Map.get(opts, :application))

    with {:ok, differences} <- differences(per_node) do
      rows = Enum.flat_map(per_node, &elem(&1, 1))

      {:ok,
       %{
         nodes: Enum.map(per_node, &Atom.to_string(elem(&1, 0))),
         applications_total: length(rows),
         applications:
           if(Map.get(opts, :only_differences, false), do: [], else: Enum.take(rows, limit)),
         differences: differences,
         node_errors: skipped ++ errors
       }}
    end
  end

  defp targets(nil) do
    skipped =
      for {n, status} <- Fanout.node_statuses(),
          n not in [node() | Node.list()],
          do: Fanout.not_called(n, status)

    {Enum.sort([node() | Node.list()]), skipped}
  end

  defp targets(nodes), do: {Enum.sort(Enum.uniq(nodes)), []}

  # A node that failed either call is reported once.
  defp merge_errors(a, b) do
    seen = MapSet.new(a, & &1.node)
    a ++ Enum.reject(b, &MapSet.member?(seen, &1.node))
  end

  defp names(apps) when is_list(apps) do
    for {name, _desc, _vsn} <- apps, into: MapSet.new(), do: name
  end

  defp names(_), do: MapSet.new()

  defp row(node, {name, description, version}, running) when is_atom(name) do
    [
      %{
        node: Atom.to_string(node),
        application: Atom.to_string(name),
        version: text(version),
        description: text(description),
        status: if(MapSet.member?(running, name), do: :started, else: :loaded)
      }
    ]
  end

  defp row(_node, _other, _running), do: []

  defp text(chars) when is_list(chars) do
    case :unicode.characters_to_binary(chars) do
      bin when is_binary(bin) -> bin
      _ -> inspect(chars, limit: 20)
    end
  end

  defp text(other), do: inspect(other, limit: 20)

  defp filter_application(per_node, nil), do: per_node

  defp filter_application(per_node, name) do
    Enum.map(per_node, fn {node, rows} ->
      {node, Enum.filter(rows, &(&1.application == name))}
    end)
  end

  # Two comparisons in the core: by version, then by status.
  defp differences(per_node) do
    names = per_node |> Enum.map(&Atom.to_string(elem(&1, 0))) |> List.to_tuple()

    by = fn key ->
      Enum.map(per_node, fn {_, rows} -> Enum.map(rows, &{&1.application, key.(&1)}) end)
    end

    with {:ok, versions} <- Native.drift_compare(by.(& &1.version)),
         {:ok, statuses} <- Native.drift_compare(by.(&Atom.to_string(&1.status))) do
      node_names = fn idx -> Enum.map(idx, &elem(names, &1)) end
      status_of = Map.new(statuses, fn {app, vs, _missing} -> {app, vs} end)

      apps =
        (Enum.map(versions, &elem(&1, 0)) ++ Enum.map(statuses, &elem(&1, 0)))
        |> Enum.uniq()
        |> Enum.sort()

      version_of = Map.new(versions, fn {app, vs, missing} -> {app, {vs, missing}} end)

      {:ok, Enum.map(apps, &difference(&1, version_of, status_of, node_names, per_node))}
    end
  end

  defp difference(app, version_of, status_of, node_names, per_node) do
    {versions, missing} =
      case Map.fetch(version_of, app) do
        {:ok, {vs, missing}} ->
          {Enum.map(vs, fn {v, idx} -> %{version: v, nodes: node_names.(idx)} end),
           node_names.(missing)}

        :error ->
          {same_version(app, per_node), []}
      end

    statuses = Map.get(status_of, app, [])
    started_on = for {"started", idx} <- statuses, n <- node_names.(idx), do: n
    loaded_on = for {"loaded", idx} <- statuses, n <- node_names.(idx), do: n

    kinds =
      [
        {:missing, missing != []},
        {:versions, length(versions) > 1},
        {:status, started_on != [] and loaded_on != []}
      ]
      |> Enum.filter(&elem(&1, 1))
      |> Enum.map(&elem(&1, 0))

    %{
      application: app,
      kinds: kinds,
      versions: versions,
      missing_on: missing,
      started_on: started_on,
      loaded_only_on: loaded_on
    }
  end

  # An application differing in status only: one version, on every node.
  defp same_version(app, per_node) do
    per_node
    |> Enum.flat_map(fn {_node, rows} -> Enum.filter(rows, &(&1.application == app)) end)
    |> Enum.group_by(& &1.version, & &1.node)
    |> Enum.map(fn {v, nodes} -> %{version: v, nodes: Enum.sort(nodes)} end)
  end
end
