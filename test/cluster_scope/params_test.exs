defmodule ClusterScope.Operation.ParamsTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Operation.Params
  alias ClusterScope.ProcessRef

  @nodes [:"a@127.0.0.1", :"b@127.0.0.2"]

  defp v(spec, value, opts \\ []) do
    spec = Map.put_new(spec, :name, :x)
    Params.validate([spec], %{"x" => value}, Keyword.put_new(opts, :known_nodes, @nodes))
  end

  defp ok(spec, value), do: assert({:ok, %{x: cast}} = v(spec, value)) && cast

  defp err(spec, value) do
    assert {:error, [%{field: "x", message: message}]} = v(spec, value)
    message
  end

  test "string: type, UTF-8 and length bounds" do
    assert ok(%{type: :string}, "héllo") == "héllo"
    assert err(%{type: :string}, 12) =~ "must be a string"
    assert err(%{type: :string}, <<0xFF, 0xFE>>) =~ "UTF-8"
    assert err(%{type: :string, min_length: 3}, "ab") =~ "at least 3"
    assert err(%{type: :string, max_length: 3}, "abcd") =~ "at most 3"
    assert err(%{type: :string}, String.duplicate("a", 10_001)) =~ "at most 10000"
  end

  test "integer: native, text, bounds" do
    assert ok(%{type: :integer}, 7) == 7
    assert ok(%{type: :integer}, " 42 ") == 42
    assert err(%{type: :integer}, "4.2") =~ "integer"
    assert err(%{type: :integer}, "12abc") =~ "integer"
    assert err(%{type: :integer}, 1.0) =~ "integer"
    assert err(%{type: :integer, min: 1}, 0) =~ "at least 1"
    assert err(%{type: :integer, max: 9}, "10") =~ "at most 9"
    assert err(%{type: :integer}, String.duplicate("9", 100)) =~ "integer"
  end

  test "integer: without declared bounds, still a signed 64-bit integer" do
    # No bignum reaches an ETS match, a NIF or the JSON encoder.
    max = 9_223_372_036_854_775_807
    min = -9_223_372_036_854_775_808
    assert ok(%{type: :integer}, max) == max
    assert ok(%{type: :integer}, min) == min
    assert ok(%{type: :integer}, Integer.to_string(max)) == max
    assert err(%{type: :integer}, max + 1) =~ "at most #{max}"
    assert err(%{type: :integer}, "23333774473005098860544") =~ "at most #{max}"
    assert err(%{type: :integer}, min - 1) =~ "at least #{min}"
    assert err(%{type: :integer, min: 0}, "23333774473005098860544") =~ "at most #{max}"
    # Declared bounds beyond 64 bits are clamped to them too.
    assert err(%{type: :integer, max: max * 4}, max + 1) =~ "at most #{max}"
    assert err(%{type: :array, items: :integer}, [1, max + 1]) =~ "item 1: must be at most"
  end

  test "float: numbers and text, bounds" do
    assert ok(%{type: :float}, 1) == 1.0
    assert ok(%{type: :float}, "0.25") == 0.25
    assert err(%{type: :float}, "nan") =~ "number"
    assert err(%{type: :float, max: 1.0}, 1.5) =~ "at most"
  end

  test "boolean" do
    assert ok(%{type: :boolean}, true) == true
    assert ok(%{type: :boolean}, "false") == false
    assert ok(%{type: :boolean}, "1") == true
    assert err(%{type: :boolean}, "yes") =~ "true or false"
  end

  test "array: lists, comma text, item types, length" do
    assert ok(%{type: :array, items: :integer}, [1, "2"]) == [1, 2]
    assert ok(%{type: :array, items: :integer}, "1,2,3") == [1, 2, 3]
    assert ok(%{type: :array}, "") == []
    assert err(%{type: :array, items: :integer}, "1,x") =~ "item 1: must be an integer"
    assert err(%{type: :array, max_length: 2}, ["a", "b", "c"]) =~ "at most 2 items"
    assert err(%{type: :array}, %{}) =~ "a list"
  end

  test "map" do
    assert ok(%{type: :map}, %{"k" => 1}) == %{"k" => 1}
    assert err(%{type: :map}, "k=1") =~ "object"
  end

  test "enum: declared atoms come back, never created" do
    assert ok(%{type: :enum, values: [:asc, :desc]}, "desc") == :desc
    assert ok(%{type: :enum, values: [:asc, :desc]}, :asc) == :asc
    assert ok(%{type: :enum, values: ["x", "y"]}, "y") == "y"
    msg = err(%{type: :enum, values: [:asc, :desc]}, "sideways_#{System.unique_integer()}")
    assert msg =~ "one of asc, desc"
  end

  test "node: only known nodes, as atoms" do
    assert ok(%{type: :node}, "b@127.0.0.2") == :"b@127.0.0.2"
    assert ok(%{type: :node}, :"a@127.0.0.1") == :"a@127.0.0.1"
    assert err(%{type: :node}, "c@127.0.0.9") =~ "known node"
    assert err(%{type: :node}, :"c@127.0.0.9") =~ "known node"
    assert err(%{type: :node}, 5) =~ "node name"
  end

  test "pid: every accepted text form, on known nodes" do
    assert %ProcessRef{node: :"a@127.0.0.1", id: 12, serial: 3} =
             ok(%{type: :pid}, "0.12.3@a@127.0.0.1")

    assert %ProcessRef{node: :"b@127.0.0.2", id: 5, serial: 0} =
             ok(%{type: :pid}, "<0.5.0>@b@127.0.0.2")

    assert {:ok, %{x: %ProcessRef{node: n}}} =
             Params.validate([%{name: :x, type: :pid}], %{"x" => "#PID<0.5.0>"})

    assert n == node()
    assert err(%{type: :pid}, "0.1.2@zz@nowhere") =~ "not a known node"
    assert err(%{type: :pid}, "pid please") =~ "process id"
    assert err(%{type: :pid}, "<1.2.3>") =~ "process id"
  end

  test "pid: a real pid round-trips through its text form" do
    pid = spawn(fn -> :ok end)
    text = ProcessRef.to_string(pid)
    assert text =~ ~r/^0\.\d+\.\d+@/
    assert {:ok, ref} = ProcessRef.parse(text)
    assert ProcessRef.to_local_pid(ref) == {:ok, pid}
  end

  test "required, defaults, and every bad field named at once" do
    specs = [
      %{name: :a, type: :integer, required: true},
      %{name: :b, type: :string, default: "d"},
      %{name: :c, type: :boolean}
    ]

    assert {:ok, %{a: 1, b: "d"} = valid} = Params.validate(specs, %{"a" => "1"})
    refute Map.has_key?(valid, :c)

    assert {:error, errors} = Params.validate(specs, %{"c" => "maybe", "zz" => 1})
    fields = Enum.map(errors, & &1.field) |> Enum.sort()
    assert fields == ["a", "c", "zz"]
    assert Enum.find(errors, &(&1.field == "a")).message == "is required"
    assert Enum.find(errors, &(&1.field == "zz")).message =~ "known: a, b, c"
  end

  test "keys starting with _ are ignored; strict: false ignores unknown keys" do
    specs = [%{name: :a, type: :integer}]
    assert {:ok, %{}} = Params.validate(specs, %{"_format" => "json"})
    assert {:ok, %{}} = Params.validate(specs, %{"zz" => 1}, strict: false)
  end

  test "malformed declarations are reported" do
    assert :ok = Params.check_specs([%{name: :a, type: :string}])
    assert {:error, msg} = Params.check_specs([%{name: :a, type: :bogus}])
    assert msg =~ "needs :name"
    assert {:error, msg} = Params.check_specs([%{name: :a, type: :enum}])
    assert msg =~ "needs :values"
  end
end

defmodule ClusterScope.Operation.ParamsAtomTest do
  # Not async: no other test may create atoms while this one counts them.
  use ExUnit.Case, async: false

  alias ClusterScope.Operation.Params

  test "validation never creates atoms" do
    specs = [
      %{name: :n, type: :node},
      %{name: :e, type: :enum, values: [:x]},
      %{name: :p, type: :pid}
    ]

    before = :erlang.system_info(:atom_count)

    for i <- 1..500 do
      Params.validate(specs, %{
        "n" => "node_#{i}@host_#{i}",
        "e" => "enum_#{i}",
        "p" => "0.1.#{i}@pid_node_#{i}@h",
        "unknown_#{i}" => i
      })
    end

    assert :erlang.system_info(:atom_count) == before
  end
end
