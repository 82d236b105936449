defmodule ClusterScope.NodeViews.CodeDrift do
  @moduledoc """
  Code drift: the modules loaded on each node with the MD5 of their loaded
  code, compared across the cluster. A module loaded at different versions
  on different nodes (a rolling deploy that never finished, a hot patch
  applied to one node) is listed with the nodes of each version; a module
  loaded on some nodes only is listed apart (in interactive mode modules
  load on first use, so this is common and not an alarm by itself).

  ## How

  Each node reads `:erlang.loaded/0` (a BIF, about 30 ns per module, where
  `:code.all_loaded/0` asks the code server for every module's file and
  costs about 3.5 µs per module) and the MD5 of each loaded module
  (`:erlang.get_module_info(module, :md5)`, the BIF every module's
  `module_info(:md5)` calls, read from the loaded code's header: nothing is
  read from disk, no module is called), and hashes the pairs in the Rust
  core into a digest of 256 bucket sums (2 KiB, `cluster_scope_core::drift`).
  The caller compares the digests, then asks every node for the modules of
  the buckets that differ only, and compares those in the core. Identical
  nodes exchange 2 KiB each and nothing more.

  ## Cost

  On each node, per call: `:erlang.loaded/0` (one list of the loaded
  modules), one MD5 read per module (measured about 0.25 µs each with the
  name as a binary: 2.5 ms for 10,000 modules) and one dirty NIF call
  (about 0.1-0.15 µs per module: 1-1.5 ms for 10,000). A second round,
  only when digests differ, reads the modules of the differing buckets
  (the same reads again and a dirty filter; only those modules are sent). On the
  caller: one NIF compare over the digests (microseconds) and one over the
  modules of the differing buckets. `bench/code_drift.exs` measures 20
  nodes of 10,000 modules against shipping every node's list and comparing
  it in Elixir.

  ## Protects against

  Lists are bounded (`limit`, at most 1,000 per list, with the total and a
  `next_after` cursor); node names are matched against the nodes known,
  never turned into atoms; each node is called with the node timeout, and a
  node that does not answer is in `node_errors` while the others answer.
  A node without ClusterScope (agentless) cannot hash its modules: it is in
  `node_errors` with status `:not_running`, since reading 10,000 MD5s from
  the outside would take 10,000 remote calls.
  """

  alias ClusterScope.{Fanout, Native}
  alias ClusterScope.Cluster.Heartbeat
  alias ClusterScope.NodeViews.CodeDrift.Watch

  @buckets 256
  @max_limit 1_000

  @doc "Buckets of a digest."
  @spec buckets() :: pos_integer()
  def buckets, do: @buckets

  @doc "The largest `limit` accepted."
  @spec max_limit() :: pos_integer()
  def max_limit, do: @max_limit

  # ---------------------------------------------------------------------
  # Node side (called on each node through ClusterScope.Fanout)

  @doc """
  This node's loaded modules as `{name, md5}` binaries (modules with old
  code only are left out). Costs one `:erlang.loaded/0` and one MD5 read
  per module (no module is called).
  """
  @spec local_modules() :: [{binary(), binary()}]
  def local_modules do
    for module <- :erlang.loaded(),
        md5 = md5(module),
        is_binary(md5),
        do: {Atom.to_string(module), md5}
  end

  defp md5(module) do
    :erlang.get_module_info(module, :md5)
  catch
    # Old code only (a module deleted, e.g. a protocol replaced by its
    # consolidated version), or purged since :erlang.loaded/0.
    :error, _ -> nil
  end

  @doc """
  This node's digest over `buckets` buckets: `{:ok, %{digest:, modules:,
  read_us:, hash_us:}}`.
  """
  @spec local_digest(pos_integer()) :: {:ok, map()} | {:error, term()}
  def local_digest(buckets) do
    t0 = System.monotonic_time(:microsecond)
    modules = local_modules()
    t1 = System.monotonic_time(:microsecond)

    with {:ok, digest} <- Native.drift_digest(modules, buckets) do
      t2 = System.monotonic_time(:microsecond)
      {:ok, %{digest: digest, modules: length(modules), read_us: t1 - t0, hash_us: t2 - t1}}
    end
  end

  @doc "This node's `{name, md5}` of the modules whose names fall into `wanted` buckets."
  @spec local_select(pos_integer(), [non_neg_integer()]) ::
          {:ok, [{binary(), binary()}]} | {:error, term()}
  def local_select(buckets, wanted), do: Native.drift_select(local_modules(), buckets, wanted)

  # ---------------------------------------------------------------------
  # Caller side

  @doc """
  Compares the loaded code of `opts.nodes` (default: every connected node
  running ClusterScope, and this one). Options: `:nodes`, `:kind`
  (`:all` (default), `:different_versions`, `:loaded_on_some_nodes`),
  `:limit` (rows, default 100, at most 1,000), `:after` (a module name:
  the rows after it, for the next page), `:timeout`.

  Returns `{:ok, map}` with `modules`: rows in name order, each with its
  `kind` (`different_versions`: loaded at two MD5s or more;
  `loaded_on_some_nodes`: one MD5 where loaded, not loaded everywhere),
  its `versions` (MD5 in hex and the nodes that have it) and
  `not_loaded_on`; the totals of both kinds, `drift` (true when a module
  differs in version), `next_after` (the cursor of the next page, or nil),
  each node's module count and costs, `watch` (what the checking node's
  `ClusterScope.NodeViews.CodeDrift.Watch` saw at its last check: modules
  drifting, those past `code_drift_alert_after_ms` and since when; `nil`
  before its first check) and `node_errors`.
  """
  @spec cluster(map()) :: {:ok, map()} | {:error, term()}
  def cluster(opts \\ %{}) do
    limit = min(Map.get(opts, :limit) || 100, @max_limit)
    timeout = Map.get(opts, :timeout) || Fanout.default_timeout()
    kind = Map.get(opts, :kind) || :all
    after_name = Map.get(opts, :after)
    {nodes, errors} = targets(Map.get(opts, :nodes))

    with {:ok, {diffs, answered, stats, more_errors}} <- compare(nodes, timeout) do
      rows = Enum.map(diffs, &row/1)
      totals = Enum.frequencies_by(rows, & &1.kind)

      shown =
        Enum.filter(rows, fn r ->
          (kind == :all or r.kind == kind) and (after_name == nil or r.module > after_name)
        end)

      page = Enum.take(shown, limit)

      {:ok,
       %{
         nodes: Enum.map(answered, &Atom.to_string/1),
         drift: Map.get(totals, :different_versions, 0) > 0,
         different_versions_total: Map.get(totals, :different_versions, 0),
         loaded_on_some_nodes_total: Map.get(totals, :loaded_on_some_nodes, 0),
         modules: page,
         next_after: if(length(shown) > limit, do: List.last(page).module),
         buckets: @buckets,
         differing_buckets: stats.differing_buckets,
         compared_modules: stats.compared_modules,
         per_node: stats.per_node,
         watch: watch(timeout),
         node_errors: errors ++ more_errors
       }}
    end
  end

  # What the checking node's watch has seen lasting (one call to it).
  defp watch(timeout) do
    leader = Watch.leader(Heartbeat.agent_nodes())

    case Fanout.call(leader, Watch, :status, [], timeout) do
      {:ok, %{} = status} ->
        status |> Map.drop([:leader?, :value]) |> Map.put(:node, Atom.to_string(leader))

      _ ->
        nil
    end
  end

  defp row(d) do
    %{
      module: d.name,
      kind: if(length(d.versions) > 1, do: :different_versions, else: :loaded_on_some_nodes),
      versions: d.versions,
      not_loaded_on: d.missing
    }
  end

  @doc """
  The modules loaded at different versions, as `%{module => %{md5 => [node]}}`
  (for the watch: no limit, names and MD5s only). Same calls as `cluster/1`.
  """
  @spec version_drift([node()] | nil, timeout()) ::
          {:ok, %{binary() => map()}, [node()], [Fanout.node_error()]} | {:error, term()}
  def version_drift(nodes \\ nil, timeout \\ Fanout.default_timeout()) do
    {nodes, errors} = targets(nodes)

    with {:ok, {diffs, answered, _stats, more}} <- compare(nodes, timeout) do
      drift =
        for %{versions: [_, _ | _] = versions, name: name} <- diffs,
            into: %{},
            do: {name, Map.new(versions, fn v -> {v.md5, v.nodes} end)}

      {:ok, drift, answered, errors ++ more}
    end
  end

  # Digests first, then the modules of the differing buckets only.
  defp compare(nodes, timeout) do
    {answers, errors} = Fanout.multicall(nodes, __MODULE__, :local_digest, [@buckets], timeout)
    {digests, refused} = split_answers(answers)
    errors = errors ++ refused
    answered = Enum.map(digests, &elem(&1, 0))

    per_node =
      Enum.map(digests, fn {node, d} ->
        %{
          node: Atom.to_string(node),
          modules: d.modules,
          read_us: d.read_us,
          hash_us: d.hash_us
        }
      end)

    with {:ok, wanted} <- Native.drift_differing(Enum.map(digests, &elem(&1, 1).digest)) do
      details(answered, wanted, per_node, errors, timeout)
    end
  end

  defp details(answered, [], per_node, errors, _timeout) do
    {:ok,
     {[], answered, %{differing_buckets: 0, compared_modules: 0, per_node: per_node}, errors}}
  end

  defp details(answered, wanted, per_node, errors, timeout) do
    {answers, errors2} =
      Fanout.multicall(answered, __MODULE__, :local_select, [@buckets, wanted], timeout)

    {selected, refused} = split_answers(answers)
    nodes = Enum.map(selected, &elem(&1, 0))
    names = List.to_tuple(Enum.map(nodes, &Atom.to_string/1))

    with {:ok, raw} <- Native.drift_compare(Enum.map(selected, &elem(&1, 1))) do
      diffs =
        Enum.map(raw, fn {name, versions, missing} ->
          %{
            name: name,
            versions:
              Enum.map(versions, fn {md5, idx} ->
                %{md5: Base.encode16(md5, case: :lower), nodes: Enum.map(idx, &elem(names, &1))}
              end),
            missing: Enum.map(missing, &elem(names, &1))
          }
        end)

      stats = %{
        differing_buckets: length(wanted),
        compared_modules: Enum.sum(Enum.map(selected, &length(elem(&1, 1)))),
        per_node: Enum.filter(per_node, &(&1.node in Tuple.to_list(names)))
      }

      {:ok, {diffs, nodes, stats, errors ++ errors2 ++ refused}}
    end
  end

  defp split_answers(answers) do
    Enum.reduce(answers, {[], []}, fn
      {node, {:ok, value}}, {oks, errs} ->
        {[{node, value} | oks], errs}

      {node, other}, {oks, errs} ->
        {oks, [refusal(node, other) | errs]}
    end)
    |> then(fn {oks, errs} -> {Enum.reverse(oks), Enum.reverse(errs)} end)
  end

  defp refusal(node, other) do
    %{
      node: node,
      status: :error,
      reason: "#{node} could not hash its modules: #{inspect(other, limit: 10)}",
      remediation: "See #{node}'s log; {:error, :native_unavailable} means its NIF is not loaded."
    }
  end

  @doc """
  The nodes a comparison goes to: `{nodes, node_errors}`. With no list,
  every connected node running ClusterScope and this one; known nodes this
  node sees as not up and connected nodes without ClusterScope are node
  errors. A list is taken as given (validated by the operation).
  """
  @spec targets([node()] | nil) :: {[node()], [Fanout.node_error()]}
  def targets(nil) do
    connected = [node() | Node.list()]
    agents = Heartbeat.agent_nodes()
    nodes = Enum.filter(connected, &(&1 == node() or &1 in agents))

    skipped =
      for {n, status} <- Fanout.node_statuses(),
          n not in connected,
          do: Fanout.not_called(n, status)

    agentless = for n <- connected -- nodes, do: agentless(n)
    {Enum.sort(nodes), skipped ++ agentless}
  end

  def targets(nodes) when is_list(nodes) do
    agents = Heartbeat.agent_nodes()
    {ok, agentless} = Enum.split_with(Enum.uniq(nodes), &(&1 == node() or &1 in agents))
    {Enum.sort(ok), Enum.map(agentless, &agentless/1)}
  end

  defp agentless(node) do
    %{
      node: node,
      status: :not_running,
      agentless: true,
      reason: "#{node} does not run ClusterScope: its modules' MD5s are read by its own agent",
      remediation: "Add :cluster_scope to #{node}'s release to compare its code."
    }
  end
end
