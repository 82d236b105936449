defmodule ClusterScope.Cluster.Causes do
  @moduledoc """
  The words of `ClusterScope.Cluster.State`: why a node went down (with its
  attribution), why it is suspected, and a classification described with
  node names. Pure functions; `ClusterScope.Cluster.CausesTest` and the
  cluster tests call them through the state's events.
  """

  @doc """
  Down because its connection closed (crash, stop, explicit disconnect),
  not because it went silent or `global` cut it.
  """
  @spec closed?(map()) :: boolean()
  def closed?(%{down_reason: :net_tick_timeout}), do: false
  def closed?(%{down_attribution: :global}), do: false
  def closed?(_), do: true

  @doc "Down but not closed: cut off from here (tick timeout, or cut by `global`)."
  @spec cut_off?(map() | nil) :: boolean()
  def cut_off?(%{status: :down} = info), do: not closed?(info)
  def cut_off?(_), do: false

  @doc """
  Why a node went down: `{sentence, attribution}` from Erlang's `reason`
  and what was recorded just before (a cut by `global`, a libcluster
  disconnect: `%{node => monotonic ms}`, `%{node => {monotonic ms,
  topology}}`), within 5 s of `now`.
  """
  @spec cause(node(), atom(), map(), map(), integer()) ::
          {String.t(), :libcluster | :global | :erlang}
  def cause(node, reason, global_cuts, libcluster_cuts, now) do
    # A tick timeout is Erlang's own verdict; global's cuts close links.
    cut_by_global? =
      case Map.fetch(global_cuts, node) do
        {:ok, at} -> now - at < 5_000 and reason in [:disconnect, :connection_closed]
        :error -> false
      end

    libcluster =
      case Map.fetch(libcluster_cuts, node) do
        {:ok, {at, topology}} when now - at < 5_000 -> topology
        _ -> nil
      end

    cond do
      libcluster != nil ->
        {"disconnected by libcluster (topology #{inspect(libcluster)})", :libcluster}

      cut_by_global? ->
        {"disconnected by global to prevent overlapping partitions (#{inspect(reason)})", :global}

      reason == :connection_closed ->
        {"connection closed: the node stopped or crashed, or closed the link", :erlang}

      reason == :net_tick_timeout ->
        {"no traffic within the net tick time: frozen, overloaded or cut off", :erlang}

      reason == :disconnect ->
        {"disconnected explicitly (erlang:disconnect_node/1)", :erlang}

      true ->
        {"nodedown: #{inspect(reason)}", :erlang}
    end
  end

  @doc "The cause of a `:suspect` event for a status."
  @spec suspect_cause(:frozen | :unreachable | :suspected) :: String.t()
  def suspect_cause(:frozen), do: "silent while its connection is up: frozen or unresponsive"
  def suspect_cause(:unreachable), do: "unreachable: on the other side of a partition"
  def suspect_cause(:suspected), do: "heartbeats stopped arriving (phi over threshold)"

  @doc "A JSON-ready description of a classification, with node names. O(N)."
  @spec describe(map(), map()) :: map()
  def describe(observation, c) do
    name = fn i -> Enum.at(observation.nodes, i) end

    %{
      status: c.status,
      anomalies: c.anomalies,
      side: c.side,
      description: description(c),
      components: Enum.map(c.components, fn comp -> Enum.map(comp, name) end),
      self_component: c.self_component,
      down: Enum.map(c.down, name),
      frozen: Enum.map(c.frozen, name),
      one_way: Enum.map(c.one_way, fn {a, b} -> %{not_hearing: name.(a), silent: name.(b)} end),
      indirect:
        Enum.map(c.indirect, fn {a, b, via} ->
          %{a: name.(a), b: name.(b), via: Enum.map(via, name)}
        end),
      unreachable_pairs: Enum.map(c.unreachable_pairs, fn {a, b} -> [name.(a), name.(b)] end)
    }
  end

  @doc """
  True when a described classification has this node outside the majority
  of a split (minority or tie), alone or with other problems (`:mixed`).
  """
  @spec split_here?(map()) :: boolean()
  def split_here?(classification) do
    :split in Map.get(classification, :anomalies, [classification.status]) and
      Map.get(classification, :side) != :majority
  end

  @doc "One sentence for a classification's status."
  @spec description(map()) :: String.t()
  def description(%{status: :healthy}), do: "every node reaches every other node"
  def description(%{status: :node_down}), do: "a node is down (its connection closed)"

  def description(%{status: :frozen}),
    do: "a node is silent while its connection is up (frozen or unresponsive)"

  def description(%{status: :split, side: side, components: comps}),
    do: "the cluster is split into #{length(comps)} parts; this node is on the #{side} side"

  def description(%{status: :one_way}),
    do: "one-way loss: a node no longer hears another that still hears it"

  def description(%{status: :indirect}),
    do: "two nodes cannot reach each other but both reach a third"

  def description(%{status: :mixed}), do: "several connectivity problems at once"
  def description(%{status: other}), do: to_string(other)
end
