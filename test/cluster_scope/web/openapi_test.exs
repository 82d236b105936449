defmodule ClusterScope.Web.OpenAPITest do
  use ExUnit.Case, async: false

  alias ClusterScope.Web.OpenAPI

  @validator Path.expand("_build/tools/venv/bin/openapi-spec-validator")

  setup do
    ClusterScope.TestOps.register()
    {:ok, _} = ClusterScope.register_operation(MyApp.Ops.Greet)
    on_exit(fn -> ClusterScope.unregister_operation(MyApp.Ops.Greet) end)
    :ok
  end

  test "every parameter type has a schema" do
    doc = OpenAPI.document()
    params = doc["paths"]["/api/v1/test/types/{target}"]["get"]["parameters"]
    by_name = Map.new(params, &{&1["name"], &1["schema"]})

    assert by_name["s"] == %{"type" => "string", "minLength" => 2, "maxLength" => 5}
    assert by_name["i"] == %{"type" => "integer", "minimum" => 1, "maximum" => 10, "default" => 3}
    assert by_name["f"]["type"] == "number"
    assert by_name["b"] == %{"type" => "boolean"}

    assert by_name["a"] == %{
             "type" => "array",
             "items" => %{"type" => "integer"},
             "maxItems" => 3
           }

    assert by_name["m"] == %{"type" => "object"}
    assert by_name["e"] == %{"type" => "string", "enum" => ["asc", "desc"]}
    assert by_name["target"]["type"] == "string"
    assert by_name["p"]["pattern"]
  end

  @tag :tmp_dir
  test "the document validates with openapi-spec-validator", %{tmp_dir: dir} do
    validator =
      System.find_executable("openapi-spec-validator") || (File.exists?(@validator) && @validator)

    if validator do
      file = Path.join(dir, "openapi.json")
      File.write!(file, ClusterScope.JSON.encode!(OpenAPI.document()))
      {out, status} = System.cmd(validator, [file], stderr_to_stdout: true)
      assert status == 0, out
      assert out =~ "OK"

      # The validator does reject a broken document, so its OK means something.
      broken = OpenAPI.document() |> Map.delete("info")
      File.write!(file, ClusterScope.JSON.encode!(broken))
      assert {_, status} = System.cmd(validator, [file], stderr_to_stdout: true)
      assert status != 0
    else
      if System.get_env("CI") == "true",
        do: flunk("openapi-spec-validator is missing: `make test` installs it")

      IO.puts("skipped: openapi-spec-validator is not installed (make test installs it)")
    end
  end
end
