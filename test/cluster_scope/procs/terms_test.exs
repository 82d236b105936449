defmodule ClusterScope.Procs.TermsTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Procs.Terms

  test "JSON maps to terms with the documented forms" do
    json = %{
      "$tuple" => [
        %{"$atom" => "echo"},
        "hi",
        [1, 2.5, nil, true],
        %{"k" => %{"$charlist" => "ab"}}
      ]
    }

    assert Terms.from_json(json) == {:ok, {:echo, "hi", [1, 2.5, nil, true], %{"k" => ~c"ab"}}}

    pid_text = ClusterScope.ProcessRef.to_string(self())
    assert Terms.from_json(%{"$pid" => pid_text}) == {:ok, self()}
  end

  test "an atom that does not exist is refused with its path, and not created" do
    name = "cs_no_such_atom_#{System.unique_integer([:positive])}"
    assert {:error, message} = Terms.from_json(%{"$tuple" => [%{"$atom" => name}]})
    assert message =~ "message.$tuple[0]"
    assert message =~ "not an existing atom"
    assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
  end

  test "terms map back to JSON, bounded" do
    assert Terms.to_json({:ok, [1, "a"], %{a: 1}, self()}) == %{
             "$tuple" => [
               %{"$atom" => "ok"},
               [1, "a"],
               %{"$map" => [[%{"$atom" => "a"}, 1]]},
               %{"$pid" => ClusterScope.ProcessRef.to_string(self())}
             ]
           }

    long = Terms.to_json(Enum.to_list(1..1_000))
    assert length(long) == 201
    assert List.last(long) == %{"$truncated" => 800}
    deep = Enum.reduce(1..100, :leaf, fn _, acc -> {acc} end)
    assert {:ok, _} = ClusterScope.JSON.encode(Terms.to_json(deep))
    assert Terms.to_json(<<255, 0>>) == %{"$binary" => Base.encode64(<<255, 0>>)}

    big = String.duplicate("a", 100_000)

    assert Terms.to_json(big) == %{
             "$truncated_binary" => 100_000,
             "head" => String.duplicate("a", 256)
           }
  end

  test "structs render as maps with their __struct__, whatever they enumerate" do
    {:ok, sup} = DynamicSupervisor.start_link(strategy: :one_for_one)
    state = :sys.get_state(sup)
    json = Terms.to_json(state)
    assert {:ok, text} = ClusterScope.JSON.encode(json)
    assert text =~ ~s("Elixir.DynamicSupervisor")

    set = MapSet.new([:a, {:b, 1}])
    assert %{"$map" => pairs} = Terms.to_json(set)
    assert [%{"$atom" => "__struct__"}, %{"$atom" => "Elixir.MapSet"}] in pairs
    assert {:ok, _} = ClusterScope.JSON.encode(Terms.to_json(%{set: set, range: 1..3}))

    big = Map.new(1..1_000, &{&1, &1})
    assert %{"$map" => pairs} = Terms.to_json(big)
    assert length(pairs) == 201
    assert List.last(pairs) == %{"$truncated" => 800}
  end
end
