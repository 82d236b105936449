defmodule ClusterScope.Docs.ReferenceTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Reference

  test "guides/operations.md matches the operations' metadata" do
    assert File.read!("guides/operations.md") == Reference.operations_markdown(),
           "guides/operations.md is stale: run `mix cluster_scope.gen.reference`"
  end

  test "every built-in operation has a section with its route and every parameter" do
    text = Reference.operations_markdown()
    metas = Reference.builtin_operations()
    assert length(metas) >= 30

    for meta <- metas do
      assert text =~ "## #{meta.name}\n"
      assert text =~ "`#{meta.method |> Atom.to_string() |> String.upcase()} #{meta.path}`"

      for p <- meta.parameters do
        assert text =~ "| `#{p.name}` |", "#{meta.name}: parameter #{p.name} missing"
      end
    end
  end

  test "host and test operations are not in the reference" do
    refute Reference.operations_markdown() =~ "ClusterScope.Test"

    refute Enum.any?(
             Reference.builtin_operations(),
             &String.ends_with?(inspect(&1.module), ".Arsenal")
           )
  end
end
