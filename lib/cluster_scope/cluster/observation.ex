defmodule ClusterScope.Cluster.Observation do
  @moduledoc """
  The connection matrix `ClusterScope.Cluster.State` has classified every
  heartbeat interval, built from the views the heartbeat process holds (see
  `ClusterScope.Cluster.Gossip`), what Erlang said (nodedowns and their
  causes), which links are connected and which of them show network loss,
  and what is read back from it (cut pairs, reachability, the matrix by
  name). `classify/1` runs the Rust classifier, on a dirty scheduler above
  #{200} nodes, where it could pass 1 ms.
  """

  alias ClusterScope.Cluster.{Causes, Gossip, TcpInfo}
  alias ClusterScope.Native

  @net_loss_silence_ms 300

  @doc """
  Classifies an observation in the Rust core (`partition::classify`): on a
  normal scheduler up to #{200} nodes; past that the NIF answers
  `:use_dirty` before decoding anything and the dirty CPU twin does the
  work (decoding the n x n matrix and classifying take ~0.4 ms at 200
  nodes, ~10 ms at 1,000).
  """
  @spec classify(map()) :: {:ok, map()} | {:error, term()}
  def classify(obs) do
    native = native(obs)

    with :use_dirty <- Native.partition_classify(native),
         do: Native.partition_classify_dirty(native)
  end

  @doc """
  What `build/5` depends on, but the kernel's link counters, hashed in
  O(N): equal inputs give equal keys (the views enter by owner, content
  version and freshness), and two 32-bit hashes of different salts make a
  collision (one skipped rebuild) a 1 in 2^64 event. Lets the state skip
  the O(N^2) build while nothing moves, without keeping a second copy of
  what it hashes.
  """
  @spec key(map(), [node()], [node()], integer()) :: {non_neg_integer(), non_neg_integer()}
  def key(state, agents, connected, now) do
    stale_ms = Gossip.stale_after_ms(state.interval)

    views =
      for {node, %{at_ms: at} = e} <- state.views,
          do: {node, Map.get(e, :cv, e[:version]), now - at <= stale_ms}

    inputs =
      {views, agents, connected, state.members, Map.keys(state.delayed), state.nodes,
       state.quorum}

    {:erlang.phash2(inputs, 4_294_967_296), :erlang.phash2({:salt, inputs}, 4_294_967_296)}
  end

  @doc """
  True when this node misses someone in `obs` (its own row has an
  unreachable entry): then the kernel's TCP_INFO is read at every build.
  """
  @spec misses_someone?(map() | nil) :: boolean()
  def misses_someone?(nil), do: true

  def misses_someone?(obs),
    do: :unreachable in Enum.at(obs.reach, obs.self_index)

  @doc """
  The matrix as the Rust classifier takes it, from the state's `nodes`,
  `members`, `delayed` nodedowns, `views`, `interval` and `quorum`, the
  agent nodes and the connected ones. O(N^2) for N known nodes; the kernel's
  TCP_INFO is read (`links`) only when this node misses someone.
  """
  @spec build(map(), [node()], [node()], integer(), (() -> map())) :: map()
  def build(state, agents, connected, now, links \\ &TcpInfo.dist_links/0) do
    observation(state, agents, connected, now, links)
  end

  # The matrix as the Rust classifier takes it. A view whose version has not
  # advanced for 2 heartbeat intervals (+100 ms) is stale: that row is
  # unknown. Its owner stopped being heard by anyone who relays it, so what it
  # said last must not count as "still hears us".
  #
  # A member cut off from here (tick timeout, or a link global cut) stays in
  # the matrix, unreachable from here, so a split stays a split once Erlang
  # gives up; one whose connection closed is `down` while it is still listed
  # (agent or views), then leaves.
  defp observation(state, agents, connected, now, links_fun) do
    stale_ms = Gossip.stale_after_ms(state.interval)
    connected = MapSet.new(connected)

    # Members cut off from here: down but not closed, or a disconnect whose
    # cause is still being decided (pg and the views have dropped it already).
    gone =
      for n <- state.members,
          n != node(),
          is_map_key(state.delayed, n) or Causes.cut_off?(Map.get(state.nodes, n)),
          into: MapSet.new(),
          do: n

    known =
      state.nodes
      |> Map.keys()
      |> Enum.concat(agents)
      |> Enum.concat(Map.keys(state.views))
      |> Enum.uniq()
      |> Enum.filter(
        &(&1 == node() or &1 in agents or MapSet.member?(gone, &1) or
            listed_by_views?(state, &1, now, stale_ms))
      )
      |> Enum.sort()

    index = known |> Enum.with_index() |> Map.new()

    reach =
      for i <- known do
        case Map.fetch(state.views, i) do
          {:ok, %{at_ms: at, view: view}} when now - at <= stale_ms or i == node() ->
            for j <- known do
              cond do
                i == j -> :reachable
                i == node() and MapSet.member?(gone, j) -> :unreachable
                true -> Map.get(view, j, :unknown)
              end
            end

          _ ->
            List.duplicate(:unknown, length(known))
        end
      end

    down =
      for n <- known do
        case Map.get(state.nodes, n) do
          %{status: :down} = info when n != node() -> Causes.closed?(info)
          _ -> false
        end
      end

    # The kernel is asked only when this node misses someone: loss versus
    # frozen matters only for a silent peer.
    own_row = Enum.at(reach, Map.fetch!(index, node()))
    links = if :unreachable in own_row, do: links_fun.(), else: %{}

    %{
      nodes: Enum.map(known, &Atom.to_string/1),
      node_atoms: known,
      index: index,
      self_index: Map.fetch!(index, node()),
      reach: reach,
      connected: for(n <- known, do: n == node() or MapSet.member?(connected, n)),
      down: down,
      net_loss:
        for(n <- known, do: TcpInfo.net_loss?(Map.get(links, n, :unknown), @net_loss_silence_ms)),
      quorum: state.quorum
    }
  end

  # A node is in the matrix through its view while that view is fresh, or
  # while the node is known here and not departed. A relay can hand over a
  # closed node's last view just after its nodedown: that stale view must
  # not bring a departed or dropped node back.
  defp listed_by_views?(state, node, now, stale_ms) do
    case {Map.fetch(state.views, node), Map.fetch(state.nodes, node)} do
      {:error, _} -> false
      {{:ok, _}, {:ok, %{status: :departed}}} -> false
      {{:ok, _}, {:ok, _}} -> true
      {{:ok, %{at_ms: at}}, :error} -> now - at <= stale_ms
    end
  end

  @doc "What the classifier NIF reads of an observation."
  @spec native(map()) :: map()
  def native(obs),
    do: Map.take(obs, [:nodes, :self_index, :reach, :connected, :down, :net_loss, :quorum])

  @doc "The nodes outside this node's component, when the classification has several."
  @spec unreachable_from_self(map(), map()) :: MapSet.t(node())
  def unreachable_from_self(observation, classification) do
    own = Enum.at(classification.components, classification.self_component, [])

    if length(classification.components) > 1 do
      for {n, i} <- Enum.with_index(observation.node_atoms),
          i not in own,
          into: MapSet.new(),
          do: n
    else
      MapSet.new()
    end
  end

  @doc "The pairs of node names that cannot reach each other, or that are down from here."
  @spec cut_pairs(map()) :: MapSet.t({String.t(), String.t()})
  def cut_pairs(obs) do
    by_reach =
      for {a, row} <- Enum.zip(obs.nodes, obs.reach),
          {b, :unreachable} <- Enum.zip(obs.nodes, row),
          a != b,
          into: MapSet.new(),
          do: pair(a, b)

    self_name = Enum.at(obs.nodes, obs.self_index)

    for {b, true} <- Enum.zip(obs.nodes, obs.down), into: by_reach, do: pair(self_name, b)
  end

  @doc "True when `a` and `b` (names) are up and reach each other, one way at least and unreachable neither way."
  @spec reachable?(map(), String.t(), String.t()) :: boolean()
  def reachable?(obs, a, b) do
    ia = Enum.find_index(obs.nodes, &(&1 == a))
    ib = Enum.find_index(obs.nodes, &(&1 == b))
    ab = obs.reach |> Enum.at(ia) |> Enum.at(ib)
    ba = obs.reach |> Enum.at(ib) |> Enum.at(ia)

    not Enum.at(obs.down, ia) and not Enum.at(obs.down, ib) and :reachable in [ab, ba] and
      :unreachable not in [ab, ba]
  end

  defp pair(a, b) when a <= b, do: {a, b}
  defp pair(a, b), do: {b, a}

  @doc "The observation as `%{from => %{to => reach}}` with node names."
  @spec matrix(map() | nil) :: map()
  def matrix(nil), do: %{}

  def matrix(obs) do
    for {from, row} <- Enum.zip(obs.nodes, obs.reach), into: %{} do
      {from, obs.nodes |> Enum.zip(row) |> Map.new()}
    end
  end
end
