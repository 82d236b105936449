defmodule ClusterScope.Cluster.Gossip do
  @moduledoc """
  The views the heartbeat process holds and the messages that keep them
  current, as pure functions (`ClusterScope.Cluster.Heartbeat` is the
  server: timers, detectors and sends).

  A node's *view* is whom it hears (`%{node => :reachable | :unreachable}`).
  Every node needs every node's view to build the connection matrix, and
  needs to know that each view is *current*: the view of a node nobody
  hears any more must read as unknown. Two numbers per node carry this:

    * `version`: the node's beat counter, advanced every interval. A view is
      fresh while a newer version arrived within `stale_ms` (directly, or
      relayed by another node).
    * `cv`: the version at which the node's view last changed.

  ## Messages

  Per interval a node sends every other agent one beat,
  `{:cs_hb, from, version, cv, view | nil, wants, digest}`. When nothing
  changes its size does not depend on the number of nodes: the view rides
  along only in the beat of the interval it changed, `wants` is empty and
  the digest is two integers. The rest happens only when something changed:

    * a receiver that sees a newer `cv` without the view (it missed that
      beat, or just met the node) pulls it from its owner (`{:cs_pull, node}`,
      answered with a `:cs_relay` of the owner's entry);
    * `wants` lists the nodes whose entries are fresh here but that this
      node has not heard directly for an interval and a half (the beats
      of an interval arrive together: a missed one shows at the second
      tick, before the row goes stale), with
      the version and cv it holds: a cut link. Every receiver that holds a
      newer version of one answers at once with a `:cs_relay` of it (the
      view too when its cv is newer), so a node cut from another keeps its
      row current through the others, within the interval, and a view
      change crosses a cut within one interval;
    * the digest is `{count, xor of hashes}` of the nodes whose views are
      fresh at the sender. On a mismatch the receiver sends (at most once per
      interval) `{:cs_sync, node, versions}` to that sender, which answers
      with every fresh entry newer than the receiver's: how a node learns of
      nodes it is not connected to (never meshed, or past a nodedown while
      they still live on the other side).

  Only entries fresh at the relaying node are relayed, so a node that
  dropped a peer at its nodedown never takes the peer's last words for
  current (that peer's version no longer advances anywhere).

  ## Cost

  Per node and interval, with N agents and nothing changing: one beat built
  and N - 1 sent, N - 1 received, each an O(1) merge; the tick is O(N) (views
  pruned, digest, wants). Measured in `bench/heartbeat_scale.exs`.
  """

  @forget_view_ms 60_000

  @typedoc "What one node hears of the others."
  @type view :: %{node() => :reachable | :unreachable}

  @typedoc "One node's entry: its latest version, its view and when they arrived here."
  @type entry :: %{
          version: non_neg_integer(),
          cv: non_neg_integer(),
          at_ms: integer(),
          view: view()
        }

  @typedoc "The views a node knows: its own and the others'."
  @type views :: %{node() => entry()}

  @typedoc "A relayed entry: node, version, cv and the view when the receiver's is older."
  @type item :: {node(), non_neg_integer(), non_neg_integer(), view() | nil}

  @typedoc "The gossip state of one node."
  @type t :: %{
          self: node(),
          version: non_neg_integer(),
          views: views(),
          last_direct: %{node() => integer()},
          digest: {non_neg_integer(), non_neg_integer()},
          stale_ms: pos_integer(),
          want_after_ms: pos_integer(),
          pulled: MapSet.t(node()),
          synced: boolean(),
          changes: non_neg_integer()
        }

  @typedoc "What the server must send: `{node, message}` to that node's heartbeat process."
  @type out :: {node(), tuple()}

  @doc """
  A fresh state for `self`, beating every `interval_ms`. `version` is where
  the beat counter starts: a restarted node continues above its previous
  life's (the heartbeat process starts it from the system clock).
  """
  @spec new(node(), pos_integer(), non_neg_integer()) :: t()
  def new(self, interval_ms, version) do
    %{
      self: self,
      version: version,
      views: %{},
      last_direct: %{},
      digest: {0, 0},
      stale_ms: stale_after_ms(interval_ms),
      want_after_ms: interval_ms + div(interval_ms, 2),
      pulled: MapSet.new(),
      synced: false,
      # Counts the views of others replaced here: the server hands the views
      # to the state between ticks when it moves.
      changes: 0
    }
  end

  @doc """
  A view whose version has not advanced for this long is stale (2 intervals
  + 100 ms): `ClusterScope.Cluster.State` reads its row as unknown and it is
  no longer relayed.
  """
  @spec stale_after_ms(pos_integer()) :: pos_integer()
  def stale_after_ms(interval), do: 2 * interval + 100

  @doc """
  One interval: records this node's `view`, and returns the state and the
  beat to send to every other agent. O(N).
  """
  @spec tick(t(), view(), integer()) :: {t(), tuple()}
  def tick(g, view, now) do
    self = g.self
    version = g.version + 1

    {cv, attach} =
      case Map.fetch(g.views, self) do
        {:ok, %{view: ^view, cv: cv}} -> {cv, nil}
        _ -> {version, view}
      end

    views =
      g.views
      |> prune(self, now, @forget_view_ms)
      |> Map.put(self, %{version: version, cv: cv, at_ms: now, view: view})

    digest = digest(views, now, g.stale_ms)
    wants = wants(g, views, now)

    g = %{g | version: version, views: views, digest: digest, pulled: MapSet.new(), synced: false}
    {g, {:cs_hb, self, version, cv, attach, wants, digest}}
  end

  @doc """
  A beat from `from`, heard directly: its entry advances, and the answer is
  what to send (a pull of its newer view, relays of what it wants, a sync
  when the digests differ). O(1) plus O(wants).
  """
  @spec beat(t(), tuple(), integer()) :: {t(), [out()]}
  def beat(g, {:cs_hb, from, version, cv, view, wants, digest}, now)
      when is_atom(from) and from != g.self and is_integer(version) and is_integer(cv) do
    g = %{g | last_direct: Map.put(g.last_direct, from, now)}

    {views, pull?, changed} =
      case Map.fetch(g.views, from) do
        {:ok, entry} ->
          entry = advance(entry, version, now)

          cond do
            cv <= entry.cv -> {Map.put(g.views, from, entry), false, 0}
            is_map(view) -> {Map.put(g.views, from, %{entry | cv: cv, view: view}), false, 1}
            true -> {Map.put(g.views, from, entry), true, 0}
          end

        :error when is_map(view) ->
          {Map.put(g.views, from, %{version: version, cv: cv, at_ms: now, view: view}), false, 1}

        :error ->
          {g.views, true, 0}
      end

    g = %{g | views: views, changes: g.changes + changed}

    {g, out} =
      if pull? and not MapSet.member?(g.pulled, from) do
        {%{g | pulled: MapSet.put(g.pulled, from)}, [{from, {:cs_pull, g.self}}]}
      else
        {g, []}
      end

    out =
      case relay_wanted(g, from, wants, now) do
        [] -> out
        items -> [{from, {:cs_relay, g.self, items}} | out]
      end

    if digest != g.digest and not g.synced do
      {%{g | synced: true}, [{from, {:cs_sync, g.self, versions(g)}} | out]}
    else
      {g, out}
    end
  end

  def beat(g, _message, _now), do: {g, []}

  @doc "Relayed entries (answers to wants, pulls and syncs) merged in. O(items)."
  @spec relay(t(), [item()], integer()) :: t()
  def relay(g, items, now) when is_list(items) do
    {views, changed} =
      Enum.reduce(items, {g.views, 0}, fn
        {node, version, cv, view}, {views, changed}
        when is_atom(node) and node != g.self and is_integer(version) and is_integer(cv) ->
          merge_item(views, changed, node, version, cv, view, now)

        _, acc ->
          acc
      end)

    %{g | views: views, changes: g.changes + changed}
  end

  def relay(g, _items, _now), do: g

  @doc "The answer to a pull: this node's own entry, with its view."
  @spec pull_reply(t()) :: tuple()
  def pull_reply(g) do
    case Map.fetch(g.views, g.self) do
      {:ok, e} -> {:cs_relay, g.self, [{g.self, e.version, e.cv, e.view}]}
      :error -> {:cs_relay, g.self, []}
    end
  end

  @doc """
  The answer to a sync: every entry fresh here that the asker lacks or holds
  older (`versions`: `%{node => {version, cv}}`), with the view when the
  asker's is older. O(N).
  """
  @spec sync_reply(t(), map(), integer()) :: tuple()
  def sync_reply(g, versions, now) when is_map(versions) do
    items =
      for {node, e} <- g.views,
          now - e.at_ms <= g.stale_ms,
          item = newer(e, node, Map.get(versions, node)),
          item != nil,
          do: item

    {:cs_relay, g.self, items}
  end

  def sync_reply(g, _versions, _now), do: {:cs_relay, g.self, []}

  @doc "Forgets a node's entry and when it was last heard (its connection closed)."
  @spec forget(t(), node()) :: t()
  def forget(g, node) do
    %{g | views: Map.delete(g.views, node), last_direct: Map.delete(g.last_direct, node)}
  end

  @doc "When `node` was last heard directly, or `nil`."
  @spec last_direct(t(), node()) :: integer() | nil
  def last_direct(g, node), do: Map.get(g.last_direct, node)

  @doc false
  # The views refreshed within `max_age_ms` of `now`, and `self`'s own.
  @spec prune(views(), node(), integer(), non_neg_integer()) :: views()
  def prune(views, self, now, max_age_ms) do
    Map.filter(views, fn {node, %{at_ms: at}} -> node == self or now - at <= max_age_ms end)
  end

  @doc false
  # {count, xor of hashes} of the nodes fresh at `now`.
  @spec digest(views(), integer(), pos_integer()) :: {non_neg_integer(), non_neg_integer()}
  def digest(views, now, stale_ms) do
    Enum.reduce(views, {0, 0}, fn {node, %{at_ms: at}}, {count, hash} = acc ->
      if now - at <= stale_ms,
        do: {count + 1, Bitwise.bxor(hash, :erlang.phash2(node, 4_294_967_296))},
        else: acc
    end)
  end

  # Fresh here, not heard directly for more than an interval: a cut link.
  defp wants(g, views, now) do
    for {node, %{at_ms: at} = e} <- views,
        node != g.self,
        now - at <= g.stale_ms,
        now - Map.get(g.last_direct, node, now - g.want_after_ms - 1) > g.want_after_ms,
        do: {node, e.version, e.cv}
  end

  defp relay_wanted(_g, _from, [], _now), do: []

  defp relay_wanted(g, from, wants, now) when is_list(wants) do
    for {node, version, cv} <- wants,
        node != g.self and node != from,
        is_integer(version) and is_integer(cv),
        e = Map.get(g.views, node),
        e != nil and now - e.at_ms <= g.stale_ms and e.version > version,
        do: {node, e.version, e.cv, if(e.cv > cv, do: e.view)}
  end

  defp relay_wanted(_g, _from, _wants, _now), do: []

  defp newer(e, node, nil), do: {node, e.version, e.cv, e.view}

  defp newer(e, node, {version, cv}) when is_integer(version) and is_integer(cv) do
    if e.version > version, do: {node, e.version, e.cv, if(e.cv > cv, do: e.view)}
  end

  defp newer(_e, _node, _other), do: nil

  defp versions(g), do: Map.new(g.views, fn {node, e} -> {node, {e.version, e.cv}} end)

  defp advance(%{version: known} = entry, version, now) when version > known,
    do: %{entry | version: version, at_ms: now}

  defp advance(entry, _version, _now), do: entry

  defp merge_item(views, changed, node, version, cv, view, now) do
    case Map.fetch(views, node) do
      {:ok, entry} ->
        entry = advance(entry, version, now)

        if cv > entry.cv and is_map(view),
          do: {Map.put(views, node, %{entry | cv: cv, view: view}), changed + 1},
          else: {Map.put(views, node, entry), changed}

      :error when is_map(view) ->
        {Map.put(views, node, %{version: version, cv: cv, at_ms: now, view: view}), changed + 1}

      :error ->
        {views, changed}
    end
  end
end
