defmodule ClusterScope.JSONTest do
  use ExUnit.Case, async: true

  alias ClusterScope.JSON
  alias ClusterScope.Native

  doctest ClusterScope.JSON

  defmodule Point do
    @moduledoc false
    defstruct [:x, :y]
  end

  defp nested_list(0), do: 1
  defp nested_list(depth), do: [nested_list(depth - 1)]

  defp nested_map(0), do: 1
  defp nested_map(depth), do: %{"k" => nested_map(depth - 1)}

  defp nested_json(depth), do: String.duplicate("[", depth) <> String.duplicate("]", depth)

  describe "encode/2 maps Elixir terms to JSON" do
    test "nil, booleans and atoms" do
      assert JSON.encode(nil) == {:ok, "null"}
      assert JSON.encode(true) == {:ok, "true"}
      assert JSON.encode(false) == {:ok, "false"}
      assert JSON.encode(:ok) == {:ok, ~s("ok")}
      assert JSON.encode(Elixir.Kernel) == {:ok, ~s("Elixir.Kernel")}
      # Latin-1 and wider atoms alike are written as UTF-8.
      assert JSON.encode(:café) == {:ok, ~s("café")}
      assert JSON.encode(:日本) == {:ok, ~s("日本")}
      assert JSON.encode(:"with \"quote\"") == {:ok, ~s("with \\"quote\\"")}
    end

    test "integers, at the edges of the 64-bit ranges" do
      assert JSON.encode(0) == {:ok, "0"}
      assert JSON.encode(-42) == {:ok, "-42"}
      assert JSON.encode(-9_223_372_036_854_775_808) == {:ok, "-9223372036854775808"}
      assert JSON.encode(18_446_744_073_709_551_615) == {:ok, "18446744073709551615"}
    end

    test "floats in their shortest exact form" do
      assert JSON.encode(1.0) == {:ok, "1.0"}
      assert JSON.encode(0.1) == {:ok, "0.1"}
      assert JSON.encode(-0.0) == {:ok, "-0.0"}
      assert JSON.encode(1.5e300) == {:ok, "1.5e+300"}
      assert JSON.encode(5.0e-324) == {:ok, "5e-324"}
    end

    test "binaries, escaped as JSON requires" do
      assert JSON.encode("") == {:ok, ~s("")}
      assert JSON.encode("é 中 😀") == {:ok, ~s("é 中 😀")}

      assert JSON.encode("q\" b\\ n\n t\t \u0001 /") ==
               {:ok, ~S("q\" b\\ n\n t\t \u0001 /")}
    end

    test "lists and maps, empty and nested" do
      assert JSON.encode([]) == {:ok, "[]"}
      assert JSON.encode(%{}) == {:ok, "{}"}
      assert JSON.encode([1, [2, [3, []]], %{}]) == {:ok, "[1,[2,[3,[]]],{}]"}
      assert JSON.encode(%{"a" => %{"b" => [nil, true]}}) == {:ok, ~s({"a":{"b":[null,true]}})}
      # A charlist is a list of integers.
      assert JSON.encode('ab') == {:ok, "[97,98]"}
    end

    test "atom keys become strings" do
      assert JSON.encode(%{a: 1}) == {:ok, ~s({"a":1})}
      # Even nil, true and false, as keys, are just atoms.
      assert {:ok, json} = JSON.encode(%{nil => 1, true => 2, false => 3})
      assert JSON.decode(json) == {:ok, %{"nil" => 1, "true" => 2, "false" => 3}}
    end

    test "a struct is a map: its __struct__ key is written" do
      {:ok, json} = JSON.encode(%Point{x: 1, y: 2})
      assert {:ok, decoded} = JSON.decode(json)

      assert decoded == %{
               "__struct__" => "Elixir.ClusterScope.JSONTest.Point",
               "x" => 1,
               "y" => 2
             }
    end

    test "encode!/2 returns the text" do
      assert JSON.encode!(%{"ok" => [1]}) == ~s({"ok":[1]})
      assert JSON.encode!([1], max_depth: 1) == "[1]"
    end
  end

  describe "decode/2 maps JSON to Elixir terms" do
    test "scalars" do
      assert JSON.decode("null") == {:ok, nil}
      assert JSON.decode("true") == {:ok, true}
      assert JSON.decode(" false\n") == {:ok, false}
      assert JSON.decode(~s("text")) == {:ok, "text"}
    end

    test "integers stay integers, other numbers are floats" do
      assert JSON.decode("42") == {:ok, 42}
      assert JSON.decode("-9223372036854775808") == {:ok, -9_223_372_036_854_775_808}
      assert JSON.decode("18446744073709551615") == {:ok, 18_446_744_073_709_551_615}
      assert {:ok, float} = JSON.decode("1.0")
      assert is_float(float) and float == 1.0
      assert JSON.decode("1e2") === {:ok, 100.0}
      assert JSON.decode("-2.5E-3") == {:ok, -0.0025}
      assert JSON.decode("1e-400") === {:ok, 0.0}
      assert JSON.decode("[0.1, 1.7976931348623157e308]") == {:ok, [0.1, 1.7976931348623157e308]}
    end

    test "strings: escapes, unicode and surrogate pairs" do
      assert JSON.decode(~S("a\"b\\c\/d\n\t\u00e9")) == {:ok, "a\"b\\c/d\n\té"}
      assert JSON.decode(~S("\ud83d\ude00")) == {:ok, "😀"}
      assert JSON.decode(~s("中文 😀")) == {:ok, "中文 😀"}
    end

    test "arrays and objects, empty and nested" do
      assert JSON.decode("[]") == {:ok, []}
      assert JSON.decode("{}") == {:ok, %{}}

      assert JSON.decode(~s({"a": [1, {"b": null, "c": []}], "d": {}})) ==
               {:ok, %{"a" => [1, %{"b" => nil, "c" => []}], "d" => %{}}}
    end

    test "object keys are binaries, and the last duplicate wins" do
      assert JSON.decode(~s({"ok": 1, "nil": 2})) == {:ok, %{"ok" => 1, "nil" => 2}}
      assert JSON.decode(~s({"a": 1, "b": 2, "a": 3})) == {:ok, %{"a" => 3, "b" => 2}}
    end
  end

  describe "errors" do
    test ":syntax says where" do
      assert {:error, {:syntax, message}} = JSON.decode("[1,\n  x]")
      assert message =~ "line 2 column 3"

      for bad <- ["", "[1,]", "{\"a\" 1}", "NaN", "01", "'a'", "[1] x", "1 2", "\"\\ud800\""] do
        assert {:error, {:syntax, message}} = JSON.decode(bad), inspect(bad)
        assert message =~ ~r/line \d+ column \d+/
      end
    end

    test ":invalid_utf8, in the input or in a binary to encode" do
      assert {:error, {:invalid_utf8, message}} = JSON.decode(<<"[\"ab", 0xFF, "\"]">>)
      assert message =~ "byte offset 4"

      assert {:error, {:invalid_utf8, message}} = JSON.encode(%{"name" => ["ok", <<0xC3>>]})
      assert message =~ "$.name[1]"

      assert {:error, {:invalid_utf8, _}} = JSON.encode(%{<<0xFF>> => 1})
    end

    test ":too_large, for input and for output" do
      assert {:error, {:too_large, message}} = JSON.decode("[1, 2, 3]", max_bytes: 8)
      assert message == "JSON input is 9 bytes, over the limit of 8 bytes"

      assert {:error, {:too_large, message}} =
               JSON.encode(List.duplicate("x", 100), max_bytes: 50)

      assert message =~ "over the limit of 50 bytes"
    end

    test ":too_deep, for input and for terms" do
      assert {:error, {:too_deep, message}} = JSON.decode(nested_json(65))
      assert message =~ "limit of 64 levels at line 1 column 65"

      assert {:error, {:too_deep, message}} = JSON.encode(nested_list(65))
      assert message =~ "limit of 64 levels at $" <> String.duplicate("[0]", 64)

      assert {:error, {:too_deep, message}} = JSON.encode(nested_map(65))
      assert message =~ "$" <> String.duplicate(".k", 64)
    end

    test ":integer_out_of_range, both ways" do
      assert {:error, {:integer_out_of_range, message}} = JSON.decode("[1, 18446744073709551616]")

      assert message =~ "line 1 column 5"

      assert {:error, {:integer_out_of_range, _}} = JSON.decode("-9223372036854775809")
      assert {:error, {:integer_out_of_range, _}} = JSON.decode(String.duplicate("9", 500))

      assert {:error, {:integer_out_of_range, message}} = JSON.encode(%{"n" => 2 ** 64})
      assert message =~ "$.n"
      assert {:error, {:integer_out_of_range, _}} = JSON.encode(-(2 ** 63) - 1)
    end

    test ":non_finite_float for numbers beyond the float range" do
      assert {:error, {:non_finite_float, message}} = JSON.decode("[1, 1e400]")
      assert message =~ "line 1 column 5"
      assert {:error, {:non_finite_float, _}} = JSON.decode("-1.5e999")
    end

    test ":unsupported names the term and its path" do
      port = Port.open({:spawn, "true"}, [])

      for {term, what} <- [
            {{1, 2}, "a tuple"},
            {self(), "a pid"},
            {make_ref(), "a reference"},
            {fn -> :ok end, "a function"},
            {port, "a port"},
            {[1 | 2], "an improper list"},
            {<<1::3>>, "a bitstring"}
          ] do
        assert {:error, {:unsupported, message}} = JSON.encode(%{"a" => [0, term]})
        assert message =~ "cannot encode #{what}"
        assert message =~ "at $.a[1]"
      end

      assert {:error, {:unsupported, message}} = JSON.encode(%{1 => :x})
      assert message =~ "a map key that is an integer"
      assert {:error, {:unsupported, message}} = JSON.encode(%{{:k} => :x})
      assert message =~ "a map key that is a tuple"

      assert {:error, {:unsupported, message}} = JSON.encode(%{:a => 1, "a" => 2})
      assert message =~ ~s(both an atom and a binary key "a")
    end

    test ":invalid_limits from the core when called past the Elixir checks" do
      assert {:error, {:invalid_limits, message}} = Native.json_decode("1", 100, 101)
      assert message =~ "max_depth is 101"
      assert {:error, {:invalid_limits, _}} = Native.json_encode(1, 0, 10)
      assert {:ok, "1"} = Native.json_encode(1, 1, 100)
    end

    test "invalid options raise ArgumentError" do
      assert_raise ArgumentError, fn -> JSON.decode("1", max_depth: 101) end
      assert_raise ArgumentError, fn -> JSON.decode("1", max_depth: -1) end
      assert_raise ArgumentError, fn -> JSON.encode(1, max_bytes: 0) end
      assert_raise ArgumentError, fn -> JSON.encode(1, max_bytes: "8") end
      assert_raise ArgumentError, fn -> JSON.encode(1, depth: 3) end
    end

    test "encode!/2 raises ArgumentError with the message" do
      assert_raise ArgumentError, "cannot encode a tuple as JSON, at $[0]", fn ->
        JSON.encode!([{}])
      end

      assert_raise ArgumentError, ~r/over the limit of 3 bytes/, fn ->
        JSON.encode!("long", max_bytes: 3)
      end
    end
  end

  describe "limits" do
    test "max_depth is exact, both ways" do
      assert {:ok, _} = JSON.decode(nested_json(64))
      assert {:ok, _} = JSON.encode(nested_list(64))
      assert {:ok, "[[1]]"} = JSON.encode([[1]], max_depth: 2)
      assert {:error, {:too_deep, _}} = JSON.encode([[1]], max_depth: 1)
      assert {:ok, [[]]} = JSON.decode("[[]]", max_depth: 2)
      assert {:error, {:too_deep, _}} = JSON.decode("[[]]", max_depth: 1)
      assert {:ok, 1} = JSON.decode("1", max_depth: 0)
      assert {:ok, _} = JSON.decode(nested_json(100), max_depth: 100)
    end

    test "depth far beyond the limit is refused, not a crash" do
      deep = String.duplicate("[", 1_000_000)
      assert {:error, {:too_deep, _}} = JSON.decode(deep, max_depth: 100)
      assert {:error, {:too_deep, _}} = JSON.encode(nested_list(100_000), max_depth: 100)
    end

    test "max_bytes is exact, both ways" do
      assert JSON.encode("abc", max_bytes: 5) == {:ok, ~s("abc")}
      assert {:error, {:too_large, _}} = JSON.encode("abc", max_bytes: 4)
      assert JSON.decode(~s("abc"), max_bytes: 5) == {:ok, "abc"}
      assert {:error, {:too_large, _}} = JSON.decode(~s("abc"), max_bytes: 4)
    end

    test "the default max_bytes is 8 MiB" do
      inside = ~s(") <> String.duplicate("x", 8 * 1024 * 1024 - 2) <> ~s(")
      assert {:ok, text} = JSON.decode(inside)
      assert byte_size(text) == 8 * 1024 * 1024 - 2
      assert {:ok, ^inside} = JSON.encode(text)

      assert {:error, {:too_large, message}} = JSON.decode(inside <> " ")
      assert message =~ "over the limit of 8388608 bytes"
      assert {:error, {:too_large, _}} = JSON.encode(text <> "x")
    end

    test "a huge term is refused without encoding all of it" do
      huge = List.duplicate(String.duplicate("x", 1000), 1_000_000)
      {micros, result} = :timer.tc(fn -> JSON.encode(huge, max_bytes: 10_000) end)
      assert {:error, {:too_large, _}} = result
      # Stops after about 10 KB rather than walking 1 GB of data.
      assert micros < 500_000
    end
  end

  describe "large inputs use the dirty scheduler" do
    setup do
      rows =
        for i <- 1..15_000 do
          %{"id" => i, "name" => "row #{i} é", "tags" => ["a", "b"], "score" => i / 7}
        end

      json = JSON.encode!(rows)
      %{rows: rows, json: json}
    end

    test "a 1 MB document goes dirty, and both ways agree", %{rows: rows, json: json} do
      assert byte_size(json) > 1_000_000
      assert JSON.dirty?(:decode, json)
      assert JSON.dirty?(:encode, rows)
      assert JSON.decode(json) == {:ok, rows}
      assert Native.json_decode_dirty(json, 8_000_000, 64) == {:ok, rows}
      assert Native.json_encode_dirty(rows, 8_000_000, 64) == {:ok, json}
      # The normal-scheduler NIFs give the same answers (only slower to yield).
      assert Native.json_decode(json, 8_000_000, 64) == {:ok, rows}
    end

    test "small inputs stay on the normal scheduler" do
      refute JSON.dirty?(:decode, ~s({"a": [1, 2]}))
      refute JSON.dirty?(:encode, %{"a" => [1, 2]})
      refute JSON.dirty?(:encode, List.duplicate("x", 1000))
      assert JSON.dirty?(:encode, List.duplicate(String.duplicate("x", 100), 1000))
      assert JSON.dirty?(:encode, Map.new(1..10_000, &{&1, &1}))
      assert JSON.dirty?(:encode, [[[List.duplicate(1.5, 10_000)]]])
    end

    test "errors come back the same from the dirty NIFs" do
      big_bad = "[" <> String.duplicate("1,", 100_000) <> "x]"
      assert JSON.dirty?(:decode, big_bad)
      assert {:error, {:syntax, message}} = JSON.decode(big_bad)
      assert message =~ "expected value at line 1 column 200002"

      big_term = List.duplicate("x", 100_000) ++ [{:tuple}]
      assert JSON.dirty?(:encode, big_term)
      assert {:error, {:unsupported, message}} = JSON.encode(big_term)
      assert message =~ "at $[100000]"
    end
  end

  describe "round trips" do
    test "nested data survives encode then decode" do
      data = %{
        "name" => "cluster é 😀",
        "nodes" => [
          %{"node" => "a@host", "up" => true, "load" => [0.5, 1.25, 1.0e-10], "pids" => 123},
          %{"node" => "b@host", "up" => false, "load" => [], "meta" => %{}}
        ],
        "limits" => %{"max" => 18_446_744_073_709_551_615, "min" => -9_223_372_036_854_775_808},
        "none" => nil,
        "deep" => nested_map(30),
        "lists" => nested_list(30)
      }

      assert {:ok, json} = JSON.encode(data)
      assert JSON.decode(json) == {:ok, data}
    end

    test "random terms survive encode then decode" do
      :rand.seed(:exsss, {1, 2, 3})

      for _ <- 1..300 do
        term = random_term(4)
        assert {:ok, json} = JSON.encode(term)
        assert JSON.decode(json) == {:ok, term}, "#{inspect(term)} via #{json}"
      end
    end

    test "atom keys and atom values come back as strings" do
      assert {:ok, json} = JSON.encode(%{status: :up, list: [:a, nil]})
      assert JSON.decode(json) == {:ok, %{"status" => "up", "list" => ["a", nil]}}
    end
  end

  defp random_term(0), do: random_scalar()

  defp random_term(depth) do
    case :rand.uniform(6) do
      1 -> Enum.map(1..:rand.uniform(5), fn _ -> random_term(depth - 1) end)
      2 -> Map.new(1..:rand.uniform(5), fn _ -> {random_string(), random_term(depth - 1)} end)
      3 -> []
      4 -> %{}
      _ -> random_scalar()
    end
  end

  defp random_scalar do
    case :rand.uniform(7) do
      1 -> nil
      2 -> :rand.uniform(2) == 1
      3 -> :rand.uniform(2 ** 64) - 2 ** 63
      4 -> (:rand.uniform() - 0.5) * :math.pow(10, :rand.uniform(600) - 300)
      5 -> :rand.uniform(2 ** 63) + 2 ** 63 - 1
      _ -> random_string()
    end
  end

  defp random_string do
    for _ <- 1..:rand.uniform(8), into: "" do
      <<Enum.random([?a, ?", ?\\, ?\n, 0x1F, 0xE9, 0x4E2D, 0x1F600])::utf8>>
    end
  end
end

defmodule ClusterScope.JSONAtomTest do
  # Not async: it counts atoms, which any concurrent test could create.
  use ExUnit.Case, async: false

  alias ClusterScope.JSON

  test "decoding objects never creates atoms" do
    keys = for _ <- 1..1000, do: "k_" <> Base.encode32(:crypto.strong_rand_bytes(10))
    documents = Enum.map(keys, &JSON.encode!(%{&1 => %{&1 => [&1]}}))
    # Warm up: load every module the decode path uses.
    {:ok, _} = JSON.decode(hd(documents))

    before = :erlang.system_info(:atom_count)
    decoded = Enum.map(documents, &JSON.decode/1)
    after_count = :erlang.system_info(:atom_count)

    assert after_count == before
    assert Enum.all?(decoded, &match?({:ok, %{}}, &1))

    for key <- Enum.take(keys, 50) do
      assert_raise ArgumentError, fn -> String.to_existing_atom(key) end
    end
  end
end

defmodule ClusterScope.JSONUnavailableTest do
  # On a peer node whose core cannot load, the codec degrades instead of
  # crashing.
  use ExUnit.Case, async: true
  @moduletag :cluster

  alias ClusterScope.LocalCluster

  test "without the core, encode and decode answer :native_unavailable" do
    {:ok, peer} =
      LocalCluster.start_peer(
        connection: :standard_io,
        link: false,
        app_env: [{:cluster_scope, :native_path, "/nonexistent/libcluster_scope_nif"}]
      )

    on_exit(fn -> System.cmd("kill", ["-KILL", "#{peer.os_pid}"]) end)

    assert LocalCluster.call(peer, ClusterScope.JSON, :encode, [%{"a" => 1}]) ==
             {:error, :native_unavailable}

    assert LocalCluster.call(peer, ClusterScope.JSON, :decode, ["[1]"]) ==
             {:error, :native_unavailable}

    big = String.duplicate("1", 100_000)

    assert LocalCluster.call(peer, ClusterScope.JSON, :decode, [big]) ==
             {:error, :native_unavailable}
  end
end
