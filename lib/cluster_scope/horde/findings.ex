defmodule ClusterScope.Horde.Findings do
  @moduledoc """
  What is wrong with a Horde registry or supervisor, from the views of
  `ClusterScope.Horde.Inspect`. Pure functions: no process is called.

  Findings (the health monitor turns the counts into values with
  thresholds, see `ClusterScope.Health.Thresholds`):

    * **skew** (`horde_skew`) - children per live member: the most loaded
      live member's count over the mean of the live members. A live member
      is one whose status is `:alive` and whose node this node sees as up;
      members with another status (`:uninitialized`: a visible node where
      no such supervisor runs, which `members: :auto` makes a member;
      `:shutting_down`, `:dead`) and members on nodes that are not up do not
      count, and neither do their children. `nil` when there are fewer
      children than live members (no even spread exists).
    * **duplicates** (`horde_duplicates`) - children that run twice, as a
      healed partition leaves them:
        * `extra_running` - children running on this node that the
          supervisor's records do not attribute to it (the supervisor lists
          more children than it records);
        * `duplicate_specs` - the same child spec (start module, function
          and arguments) recorded on more than one node: Horde's strategies
          place equal specs on one node, so a second node means a copy
          (counted: the children beyond those of the node with the most);
        * `registry_gaps` - children of this node of which some hold a key
          in a Horde registry and others do not: the unnamed ones are
          usually copies that lost their name to a conflict.
    * **lost children** (`horde_lost_children`) - children recorded on a
      node that is not up (gone, frozen, cut off): Horde did not (yet)
      restart them elsewhere. Horde restarts the children of a member it
      sees die; with `members: :auto` a member removed from the list before
      that is never restarted.
    * **members not connected** (`horde_members_not_connected`) - members
      on nodes this node is not connected to, or sees as not up, whatever
      their Horde status (a `:dead` member still counts in a quorum
      strategy's majority until it leaves the member list).
    * **membership disagreement** - nodes whose lists of members differ
      (`compare/1`, across nodes' summaries).
  """

  @max_listed 20

  @doc """
  Findings of one supervisor view (`ClusterScope.Horde.Inspect.local_supervisor/2`),
  with `up` the nodes seen as up from here. Returns a summary without the
  per-child lists.
  """
  @spec supervisor(map(), [node()]) :: map()
  def supervisor(view, up) do
    up = MapSet.new(up)
    here = view.node

    members =
      Enum.map(view.members, fn m -> Map.put(m, :connected, MapSet.member?(up, m.node)) end)

    live = for m <- members, m.status == :alive and m.connected, uniq: true, do: m.node
    per_node = Enum.frequencies_by(view.records, & &1.member_node)
    lost = Enum.count(view.records, &(not MapSet.member?(up, node(&1.pid))))

    {running, running_error} =
      case view.running do
        list when is_list(list) -> {list, nil}
        {:error, text} -> {[], text}
      end

    records_here = Map.get(per_node, here, 0)
    extra = if running_error, do: 0, else: max(length(running) - records_here, 0)
    dup_specs = duplicate_specs(view.records)
    gaps = registry_gaps(running)

    not_connected = for m <- members, not m.connected, uniq: true, do: m.node

    %{
      name: view.name,
      kind: :supervisor,
      node: here,
      strategy: view.strategy,
      process_redistribution: view.process_redistribution,
      members_option: view.members_option,
      members: members,
      live_nodes: live,
      children_count: length(view.records),
      children_per_node: per_node,
      running_here: if(running_error, do: nil, else: length(running)),
      running_error: running_error,
      skew: skew(per_node, live),
      skew_all_members: skew(per_node, Enum.map(members, & &1.node) |> Enum.uniq()),
      duplicates: %{
        extra_running: extra,
        duplicate_specs: Enum.take(dup_specs, @max_listed),
        registry_gaps: Enum.take(gaps, @max_listed),
        count:
          extra + Enum.sum(Enum.map(dup_specs, & &1.copies)) +
            Enum.sum(Enum.map(gaps, & &1.unnamed))
      },
      lost_children: lost,
      members_not_connected: not_connected
    }
  end

  @doc """
  Skew of `per_node` counts over `nodes`: max / mean, nodes without a count
  counting 0, children on other nodes ignored. `nil` for no nodes or fewer
  children than nodes.
  """
  @spec skew(%{node() => non_neg_integer()}, [node()]) :: float() | nil
  def skew(_per_node, []), do: nil

  def skew(per_node, nodes) do
    counts = Enum.map(nodes, &Map.get(per_node, &1, 0))
    total = Enum.sum(counts)

    if total >= length(counts) and total > 0,
      do: Float.round(Enum.max(counts) / (total / length(counts)), 2)
  end

  # The same start MFA recorded on two nodes or more.
  defp duplicate_specs(records) do
    records
    |> Enum.group_by(fn r -> elem(r.spec, 1) end)
    |> Enum.flat_map(fn {_hash, group} ->
      per_node = Enum.frequencies_by(group, & &1.member_node)

      if map_size(per_node) > 1 do
        [
          %{
            spec: elem(hd(group).spec, 0),
            nodes: per_node,
            copies: length(group) - Enum.max(Map.values(per_node))
          }
        ]
      else
        []
      end
    end)
    |> Enum.sort_by(&(-&1.copies))
  end

  # Per registry: children of this node of the same spec of which some hold
  # a key there and some do not.
  defp registry_gaps(running) do
    registries = running |> Enum.flat_map(& &1.registered) |> Enum.uniq()

    for r <- registries,
        {spec, group} <- Enum.group_by(running, &elem(&1.spec, 0)),
        named = Enum.count(group, &(r in &1.registered)),
        named > 0 and named < length(group) do
      %{registry: r, spec: spec, named: named, unnamed: length(group) - named}
    end
  end

  @doc "Findings of one registry view (`ClusterScope.Horde.Inspect.local_registry/2`)."
  @spec registry(map(), [node()]) :: map()
  def registry(view, up) do
    up = MapSet.new(up)
    members = Enum.map(view.members, &Map.put(&1, :connected, MapSet.member?(up, &1.node)))

    %{
      name: view.name,
      kind: :registry,
      node: view.node,
      members: members,
      count: view.count,
      per_node: view.per_node,
      digest: view.digest,
      entries_on_nodes_not_up:
        for({n, c} <- view.per_node, not MapSet.member?(up, n), do: {n, c}) |> Map.new(),
      members_not_connected: for(m <- members, not m.connected, uniq: true, do: m.node)
    }
  end

  @doc """
  The values a health sample carries, from a local summary
  (`ClusterScope.Horde.Inspect.local_summary/1`): `horde_skew` (the largest
  skew), `horde_duplicates`, `horde_lost_children`,
  `horde_members_not_connected` (distinct nodes), all `nil` when nothing
  could be read.
  """
  @spec values(map()) :: map()
  def values(%{supervisors: sups, registries: regs}) do
    ok_sups = Enum.reject(sups, &Map.has_key?(&1, :error))
    ok_regs = Enum.reject(regs, &Map.has_key?(&1, :error))
    read? = ok_sups != [] or ok_regs != []
    skews = for %{skew: s} <- ok_sups, is_number(s), do: s

    %{
      horde_skew: Enum.max(skews, fn -> nil end),
      horde_duplicates: if(read?, do: Enum.sum(Enum.map(ok_sups, & &1.duplicates.count))),
      horde_lost_children: if(read?, do: Enum.sum(Enum.map(ok_sups, & &1.lost_children))),
      horde_members_not_connected:
        if(read?,
          do:
            (ok_sups ++ ok_regs)
            |> Enum.flat_map(& &1.members_not_connected)
            |> Enum.uniq()
            |> length()
        )
    }
  end

  def values(_),
    do: %{
      horde_skew: nil,
      horde_duplicates: nil,
      horde_lost_children: nil,
      horde_members_not_connected: nil
    }

  @doc """
  Compares nodes' local summaries (`[{node, summary}]`): for every
  registry and supervisor name, the nodes whose member lists differ from
  the most common one (`membership_disagreements`), the registries whose
  replicas differ (`replica_disagreements`, by digest and count), and the
  names that run on some nodes only (`missing_on`).
  """
  @spec compare([{node(), map()}]) :: map()
  def compare(summaries) do
    items =
      for {n, s} <- summaries,
          item <- Map.get(s, :supervisors, []) ++ Map.get(s, :registries, []),
          not Map.has_key?(item, :error),
          do: {n, item}

    groups = Enum.group_by(items, fn {_n, i} -> {i.kind, i.name} end)
    nodes = Enum.map(summaries, &elem(&1, 0))

    membership =
      for {{kind, name}, group} <- groups,
          views = Map.new(group, fn {n, i} -> {n, member_set(i)} end),
          length(Enum.uniq(Map.values(views))) > 1 do
        common =
          views |> Map.values() |> Enum.frequencies() |> Enum.max_by(&elem(&1, 1)) |> elem(0)

        %{
          kind: kind,
          name: name,
          members_by_node: Map.new(views, fn {n, set} -> {n, shown(set)} end),
          disagreeing: for({n, set} <- views, set != common, do: n) |> Enum.sort()
        }
      end

    replicas =
      for {{:registry, name}, group} <- groups,
          length(Enum.uniq_by(group, fn {_n, i} -> i.digest end)) > 1 do
        %{name: name, count_by_node: Map.new(group, fn {n, i} -> {n, i.count} end)}
      end

    missing =
      for {{kind, name}, group} <- groups,
          present = Enum.map(group, &elem(&1, 0)),
          absent = nodes -- present,
          absent != [] do
        %{kind: kind, name: name, missing_on: Enum.sort(absent)}
      end

    %{
      membership_disagreements: membership,
      replica_disagreements: replicas,
      missing_on: missing
    }
  end

  @doc """
  The part of a health sample that `cluster_health` compares across nodes:
  the Horde values and, per registry and supervisor, a digest and count
  of its member nodes and (for registries) its entry count and digest, so
  its size does not grow with the cluster. `nil` when the sample has no
  Horde section.
  """
  @spec health_part(map() | nil) :: map() | nil
  def health_part(%{horde: %{} = horde, values: values}) do
    # Members travel as a digest and a count (a list would make the
    # answers of N nodes grow with N squared); compare/1 compares digests.
    keep = fn items ->
      for item <- List.wrap(items) do
        item
        |> Map.take([:kind, :name, :count, :digest, :error])
        |> then(fn kept ->
          if is_list(item[:members]),
            do:
              Map.merge(kept, %{
                members_digest: :erlang.phash2(member_set(item)),
                member_count: length(member_set(item))
              }),
            else: kept
        end)
      end
    end

    %{
      values: Map.take(values, Map.keys(values(nil))),
      supervisors: keep.(horde[:supervisors]),
      registries: keep.(horde[:registries])
    }
  end

  def health_part(_sample), do: nil

  defp member_set(%{members_digest: digest, member_count: count}), do: {:digest, digest, count}
  defp member_set(item), do: item.members |> Enum.map(& &1.node) |> Enum.uniq() |> Enum.sort()

  defp shown({:digest, _digest, count}), do: %{member_count: count}
  defp shown(list), do: list
end
