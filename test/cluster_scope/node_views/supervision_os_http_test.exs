defmodule ClusterScope.NodeViews.SupervisionOsHTTPTest do
  # The node views over HTTP on this node: JSON that renders (pids as text,
  # nested children), the OpenAPI entries, and the CLI flags.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  setup do
    {:ok, endpoint} = Endpoint.start(port: 0)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{url: endpoint.url, node: URI.encode_www_form(Atom.to_string(node()))}
  end

  test "supervision tree, node OS and cluster OS answer JSON", %{url: url, node: node} do
    assert {200, %{"data" => data}, _} =
             HTTP.get(
               url <>
                 "/api/v1/cluster/nodes/#{node}/supervision?root=cluster_scope&depth=2&limit=5"
             )

    root = data["root"]
    assert root["found_by"] == %{"application" => "cluster_scope"}
    assert root["flags"]["strategy"] == "one_for_one"
    assert String.ends_with?(root["pid"], "@" <> Atom.to_string(node()))
    assert length(root["children"]) == 5 and root["next_offset"] == 5

    assert {200, %{"data" => %{"root" => apps}}, _} =
             HTTP.get(url <> "/api/v1/cluster/nodes/#{node}/supervision")

    assert apps["found_by"] == "applications"
    assert Enum.any?(apps["children"], &(&1["id"] == "kernel"))

    assert {400, %{"error" => error}, _} =
             HTTP.get(url <> "/api/v1/cluster/nodes/#{node}/supervision?root=kernel&limit=0")

    assert inspect(error) =~ "limit"

    assert {404, _, _} =
             HTTP.get(url <> "/api/v1/cluster/nodes/#{node}/supervision?root=nothing_like_this")

    assert {200, %{"data" => os}, _} = HTTP.get(url <> "/api/v1/cluster/nodes/#{node}/os")
    assert os["memory"]["total_bytes"] > 0

    assert {200, %{"data" => all}, _} = HTTP.get(url <> "/api/v1/cluster/os?disks=false")
    assert Atom.to_string(node()) in all["nodes"]

    assert {200, doc, _} = HTTP.get(url <> "/api/openapi.json")

    for path <- [
          "/api/v1/cluster/nodes/{node}/supervision",
          "/api/v1/cluster/nodes/{node}/os",
          "/api/v1/cluster/os"
        ] do
      assert Map.has_key?(doc["paths"], path), "#{path} not in #{inspect(Map.keys(doc["paths"]))}"
    end
  end

  test "the CLI takes the operations' flags" do
    n = Atom.to_string(node())

    {0, out} =
      ClusterScope.CLI.main(
        ~w(supervision_tree --param node=#{n} --root kernel --depth 2 --limit 3 --call-timeout-ms 500 --json)
      )

    {:ok, data} = ClusterScope.JSON.decode(IO.iodata_to_binary(out))
    assert inspect(data) =~ "kernel_sup"

    {0, out} = ClusterScope.CLI.main(~w(node_os --param node=#{n} --disks false))
    assert IO.iodata_to_binary(out) =~ "total_bytes"

    {code, out} = ClusterScope.CLI.main(~w(supervision_tree --param node=#{n} --depth 9))
    assert code != 0 and IO.iodata_to_binary(out) =~ "depth"
  end
end
