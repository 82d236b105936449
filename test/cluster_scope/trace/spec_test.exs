defmodule ClusterScope.Trace.SpecTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Trace.Spec

  defp build(params), do: Spec.build(params, [node()])

  defp fields({:error, errors}), do: Enum.map(errors, & &1.field)

  test "a function pattern gets the default limits and every node" do
    assert {:ok, spec} = build(%{module: "TestApp.Work", function: "step", arity: "1"})
    assert spec.mfa == {TestApp.Work, :step, 1}
    assert spec.nodes == [node()]
    assert spec.match_spec == true
    assert %{duration_ms: 10_000, max_events: 1_000, rate: 200, max_queue: 5_000} = spec
  end

  test "messages as text (a direct Elixir call) is read, and a bad value is named, not a crash" do
    pid = ClusterScope.ProcessRef.from_pid(self())
    assert {:ok, %{messages: [:receive]}} = build(%{process: pid, messages: "receive"})
    assert {:ok, %{messages: [:send, :receive]}} = build(%{process: pid, messages: :both})
    assert fields(build(%{process: pid, messages: "loud"})) == ["messages"]
    assert {:error, [%{message: m}]} = build(%{process: pid, messages: 7})
    assert m =~ "send, receive or both"
  end

  test "return values add exception_trace to the match spec" do
    {:ok, spec} = build(%{module: "TestApp.Work", function: "step", return: true})
    assert spec.match_spec == [{:_, [], [{:exception_trace}]}]
    assert spec.mfa == {TestApp.Work, :step, :_}
  end

  test "modules that handle secrets and ClusterScope's own are refused even when forced" do
    for module <-
          ~w(auth crypto erl_distribution dist_util net_kernel inet_tcp_dist public_key) ++
            ["ClusterScope.Secrets", "ClusterScope.Web.Handler", "ClusterScope"],
        force <- [false, true] do
      assert {:error, [%{field: "module", message: message}]} =
               build(%{module: module, function: "_", force: force})

      assert message =~ "never traced"
    end

    assert {:error, [%{field: "name"}]} = build(%{name: "auth", messages: :receive, force: true})
    assert {:ok, _} = build(%{module: "TestApp.Work", function: "step", force: true})
  end

  test "hot modules with wildcards and ClusterScope's own are refused unless forced" do
    assert fields(build(%{module: "erlang", function: "_"})) == ["module"]
    assert fields(build(%{module: "lists", function: "reverse"})) == ["module"]
    assert fields(build(%{module: "Enum", function: "map", arity: "_"})) == ["module"]
    assert {:ok, _} = build(%{module: "lists", function: "reverse", arity: "1"})
    assert fields(build(%{module: "ClusterScope.Trace", function: "start"})) == ["module"]
    assert {:ok, _} = build(%{module: "erlang", function: "_", force: true})
  end

  test "names that are not atoms yet are errors, and stay non-atoms" do
    name = "cs_no_module_#{System.unique_integer([:positive])}"
    assert fields(build(%{module: name, function: "x"})) == ["module"]
    assert fields(build(%{module: "TestApp.Work", function: name})) == ["function"]
    assert fields(build(%{name: name, messages: :both})) == ["name"]
    assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
  end

  test "messages need a process, and something must be traced" do
    assert "messages" in fields(build(%{messages: :send}))
    assert fields(build(%{})) == ["module"]
    assert fields(build(%{module: "TestApp.Work", arity: "300"})) == ["arity"]
  end

  test "a match spec comes as JSON in the $atom/$tuple mapping and is checked" do
    ms = [
      %{
        "$tuple" => [
          [%{"$atom" => "$1"}],
          [],
          [%{"$tuple" => [%{"$atom" => "message"}, %{"$atom" => "$1"}]}]
        ]
      }
    ]

    assert {:ok, spec} = build(%{module: "TestApp.Work", function: "step", match_spec: ms})
    assert spec.match_spec == [{[:"$1"], [], [{:message, :"$1"}]}]

    assert fields(build(%{module: "TestApp.Work", function: "step", match_spec: [1]})) == [
             "match_spec"
           ]

    assert fields(build(%{module: "TestApp.Work", function: "step", match_spec: "x"})) == [
             "match_spec"
           ]
  end
end
