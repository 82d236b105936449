defmodule ClusterScope.Horde.FindingsTest do
  # Pure findings from views shaped like Horde 0.10's: runs everywhere.
  use ExUnit.Case, async: true

  alias ClusterScope.Horde.Findings

  defp record(node, spec \\ {"W.start_link/1", 1}) do
    %{id: make_ref(), member_node: node, pid: pid_on(node), spec: spec}
  end

  # A pid of another node, built from this process's external form.
  defp pid_on(node) do
    rest =
      case :erlang.term_to_binary(self()) do
        <<131, 88, 100, len::16, _::binary-size(len), rest::binary>> -> rest
        <<131, 88, 119, len, _::binary-size(len), rest::binary>> -> rest
      end

    name = Atom.to_string(node)
    :erlang.binary_to_term(<<131, 88, 100, byte_size(name)::16, name::binary, rest::binary>>)
  end

  defp view(members, records, running \\ []) do
    %{
      name: :sup,
      node: node(),
      strategy: Horde.UniformDistribution,
      process_redistribution: :passive,
      members_option: :auto,
      members: for({n, s} <- members, do: %{name: :sup, node: n, status: s}),
      records: records,
      running: running
    }
  end

  test "finding 2: skew counts live members only, not an uninitialized member with 0 children" do
    # 3 live members with 11, 5 and 4 children and one visible node without
    # Horde (uninitialized, 0 children): counting it gives 11 / 5 = 2.2...
    records =
      List.duplicate(record(:a@h), 11) ++
        List.duplicate(record(:b@h), 5) ++ List.duplicate(record(:c@h), 4)

    v = view([{:a@h, :alive}, {:b@h, :alive}, {:c@h, :alive}, {:d@h, :uninitialized}], records)
    s = Findings.supervisor(v, [node(), :a@h, :b@h, :c@h, :d@h])

    assert s.live_nodes == [:a@h, :b@h, :c@h]
    # 11 / (20 / 3) = 1.65 over live members; 11 / (20 / 4) = 2.2 over all.
    assert s.skew == 1.65
    assert s.skew_all_members == 2.2
  end

  test "a live member on a node that is not up does not count, and its children are lost" do
    records = List.duplicate(record(:a@h), 4) ++ List.duplicate(record(:b@h), 2)
    v = view([{:a@h, :alive}, {:b@h, :alive}], records)
    s = Findings.supervisor(v, [node(), :a@h])

    assert node(hd(records).pid) == :a@h
    assert s.live_nodes == [:a@h]
    assert s.members_not_connected == [:b@h]
    # Over the one live member only; b's two children are lost.
    assert s.skew == 1.0
    assert s.lost_children == 2
  end

  test "skew is nil with fewer children than live members" do
    assert Findings.skew(%{a: 1}, [:a, :b, :c]) == nil
    assert Findings.skew(%{a: 3, b: 1, c: 2}, [:a, :b, :c]) == 1.5
    assert Findings.skew(%{}, []) == nil
  end

  test "finding 3: duplicates: more running than recorded, the same spec on two nodes, unnamed copies" do
    here = node()

    records =
      [%{record(here, {"W.start_link/1", 7}) | pid: self()}, record(:a@h, {"W.start_link/1", 7})] ++
        List.duplicate(%{record(here, {"V.start_link/1", 8}) | pid: self()}, 2)

    running =
      for i <- 1..5 do
        %{pid: self(), spec: {"V.start_link/1", 8}, registered: if(i <= 3, do: [:reg], else: [])}
      end

    v = view([{here, :alive}, {:a@h, :alive}], records, running)
    s = Findings.supervisor(v, [here, :a@h])

    # 5 running here, 3 recorded here.
    assert s.duplicates.extra_running == 2
    assert [%{spec: "W.start_link/1", copies: 1, nodes: nodes}] = s.duplicates.duplicate_specs
    assert nodes == %{here => 1, :a@h => 1}
    assert [%{registry: :reg, named: 3, unnamed: 2}] = s.duplicates.registry_gaps
    assert s.duplicates.count == 2 + 1 + 2
  end

  test "values: the health metrics from a summary, nil without Horde" do
    nils = Findings.values(nil)

    assert nils == %{
             horde_skew: nil,
             horde_duplicates: nil,
             horde_lost_children: nil,
             horde_members_not_connected: nil
           }

    v =
      view([{node(), :alive}, {:a@h, :alive}], List.duplicate(%{record(node()) | pid: self()}, 3))

    sup = Findings.supervisor(v, [node()])
    values = Findings.values(%{supervisors: [sup, %{name: :x, error: "down"}], registries: []})
    assert values.horde_skew == 1.0
    assert values.horde_members_not_connected == 1
    assert values.horde_duplicates == 0
  end

  test "compare: membership and replica disagreements, and where a name is missing" do
    item = fn kind, name, nodes, digest ->
      %{
        kind: kind,
        name: name,
        members: for(n <- nodes, do: %{node: n}),
        digest: digest,
        count: 1
      }
    end

    summaries = [
      {:a@h,
       %{
         supervisors: [item.(:supervisor, :s, [:a@h, :b@h], nil)],
         registries: [item.(:registry, :r, [:a@h], 1)]
       }},
      {:b@h,
       %{
         supervisors: [item.(:supervisor, :s, [:a@h, :b@h], nil)],
         registries: [item.(:registry, :r, [:a@h], 2)]
       }},
      {:c@h, %{supervisors: [item.(:supervisor, :s, [:c@h], nil)], registries: []}}
    ]

    c = Findings.compare(summaries)

    # The same from health parts (member digests instead of lists).
    parts =
      for {n, summary} <- summaries do
        {n, Findings.health_part(%{horde: summary, values: %{}})}
      end

    p = Findings.compare(parts)

    assert [%{name: :s, disagreeing: [:c@h], members_by_node: by_node}] =
             p.membership_disagreements

    assert by_node[:c@h] == %{member_count: 1}
    assert length(p.replica_disagreements) == 1
    assert [%{name: :s, disagreeing: [:c@h]}] = c.membership_disagreements
    assert [%{name: :r, count_by_node: %{a@h: 1, b@h: 1}}] = c.replica_disagreements
    assert [%{kind: :registry, name: :r, missing_on: [:c@h]}] = c.missing_on
  end
end
