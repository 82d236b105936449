defmodule ClusterScope.RedactTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Redact

  @secret "s3cr3t-cookie-value"

  defp rules(keys \\ ["password", "token"]), do: Redact.rules(keys, [@secret])

  test "a secret goes wherever it sits: atom, binary, charlist, inside a longer text" do
    atom = String.to_atom(@secret)

    term = %{
      a: atom,
      b: [@secret, {~c"-setcookie", String.to_charlist(@secret)}],
      c: "x #{@secret} y"
    }

    out = Redact.term(term, rules())

    refute inspect(out, limit: :infinity) =~ @secret
    assert out.a == "[REDACTED]"
    assert out.c == "x [REDACTED] y"
    assert [_, {~c"-setcookie", ~c"[REDACTED]"}] = out.b
  end

  test "values under secret keys are replaced, keys kept, other values untouched" do
    term = [
      password: "hunter2",
      user: "bob",
      nested: %{"DB_Password" => ~c"pw", "name" => "n", {:t} => 1},
      api: {:token, {:complex, "x"}}
    ]

    out = Redact.term(term, rules())
    assert out[:password] == "[REDACTED]"
    assert out[:user] == "bob"
    assert out[:nested]["DB_Password"] == "[REDACTED]"
    assert out[:nested]["name"] == "n"
    assert out[:nested][{:t}] == 1
    assert out[:api] == {:token, "[REDACTED]"}
  end

  test "improper lists, pids, refs, funs and empty rules pass through" do
    pid = self()
    ref = make_ref()
    fun = fn -> :ok end
    term = {[1, 2 | @secret], pid, ref, fun, <<255, 0>>}
    assert {[1, 2 | "[REDACTED]"], ^pid, ^ref, ^fun, <<255, 0>>} = Redact.term(term, rules())
    assert Redact.term(term, %{exact: [], pattern: nil, keys: []}) == term
  end

  test "keys that are not UTF-8 (a binary UUID, a hash) are compared, not a crash" do
    term = %{<<255, 0, 1>> => "v", <<"PASS", 255, "WORD">> => "x", "Api_Token" => "t"}
    out = Redact.term(term, rules())
    assert out[<<255, 0, 1>>] == "v"
    assert out["Api_Token"] == "[REDACTED]"
    assert Redact.term([{<<200>>, 1}], rules()) == [{<<200>>, 1}]
  end

  test "a short secret is replaced only where a value equals it" do
    r = Redact.rules([], ["abc"])
    assert Redact.term(["abc", "abcdef", :abc], r) == ["[REDACTED]", "abcdef", "[REDACTED]"]
  end

  test "the node's own cookie is among the secrets" do
    if Node.alive?() do
      cookie = Atom.to_string(Node.get_cookie())
      assert cookie in Redact.cookies()
      assert Redact.term(Node.get_cookie(), Redact.rules([])) == "[REDACTED]"
    end
  end

  test "the module calls only OTP, so it can be loaded on a node without ClusterScope" do
    {_, binary, _} = :code.get_object_code(Redact)
    {:ok, {Redact, [imports: imports]}} = :beam_lib.chunks(binary, [:imports])
    modules = imports |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
    elixir = Enum.filter(modules, &String.starts_with?(Atom.to_string(&1), "Elixir."))
    assert elixir == []
  end
end
