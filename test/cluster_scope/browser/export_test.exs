defmodule ClusterScope.Browser.ExportTest do
  # Export in Debian's chromium: the topology SVG downloads and parses as
  # XML with every node in it; the JSON report parses and carries the
  # topology; the Markdown report lists the nodes.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.Mode
  alias ClusterScope.Test.{Browser, Cluster, ModeSwitch}

  setup_all do
    browser = start_supervised!(Browser)
    endpoint = Browser.start_endpoint(token: "browser-export-token-0123456789")
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    %{browser: browser, endpoint: endpoint}
  end

  setup %{browser: browser} do
    Cluster.forget_gone()
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    %{page: page}
  end

  test "the topology SVG, the JSON and the Markdown report download and parse",
       %{page: page, endpoint: ep} do
    ModeSwitch.allow()
    {:ok, %{nodes: virtual}} = Mode.set(:simulated, nodes: 4)
    # Every node the topology lists (the virtual ones, this node, and any
    # an earlier test left known).
    names = Enum.map(ClusterScope.Cluster.State.topology().nodes, &Atom.to_string(&1.node))
    for v <- [node() | virtual], do: assert(Atom.to_string(v) in names)

    [_, _, _, svg, json, md, _] =
      Browser.run!(page, [
        %{op: "goto", url: ep.url <> "/#tab=export"},
        %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
        %{
          op: "wait_fn",
          js: "(n) => document.querySelectorAll('#export-topology g.node').length === n",
          arg: length(names)
        },
        %{op: "download", selector: "#export-svg"},
        %{op: "download", selector: "#export-json"},
        %{op: "download", selector: "#export-md"},
        %{op: "screenshot", name: "export"}
      ])

    assert svg["filename"] =~ ~r/^cluster-topology-.*\.svg$/
    # A standalone SVG document: XML that parses, svg root, every node.
    {doc, _rest} = :xmerl_scan.string(:binary.bin_to_list(svg["text"]), quiet: true)
    assert elem(doc, 1) == :svg
    drawn = xpath_values(doc, ~c"//*[local-name()='g'][@data-node]/@data-node")
    assert Enum.sort(drawn) == Enum.sort(names)
    refute svg["text"] =~ "<script"
    refute svg["text"] =~ "href=\"http"

    assert json["filename"] =~ ~r/\.json$/
    {:ok, report} = ClusterScope.JSON.decode(json["text"])
    assert report["mode"] == "simulated"
    assert Enum.sort(Enum.map(report["topology"]["nodes"], & &1["node"])) == Enum.sort(names)
    assert report["build"]["elixir_version"] == System.version()

    assert md["filename"] =~ ~r/\.md$/
    assert md["text"] =~ "# ClusterScope report"
    assert md["text"] =~ "simulated"
    for n <- names, do: assert(md["text"] =~ "`#{n}`")

    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  defp xpath_values(doc, path) do
    for attr <- :xmerl_xpath.string(path, doc), do: attr |> elem(8) |> List.to_string()
  end
end
