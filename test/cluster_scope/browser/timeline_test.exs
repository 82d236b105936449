defmodule ClusterScope.Browser.TimelineTest do
  # The timeline in Debian's chromium: the history of cluster events, and
  # playback: scrubbing back shows the topology as it was (replayed from
  # the events), playing forward comes back to the live one.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.{Mode, Simulator}
  alias ClusterScope.Test.{Browser, Cluster, ModeSwitch}

  setup_all do
    browser = start_supervised!(Browser)
    endpoint = Browser.start_endpoint(token: "browser-timeline-token-0123456789")
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    %{browser: browser, endpoint: endpoint}
  end

  setup %{browser: browser} do
    Cluster.forget_gone()
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    %{page: page}
  end

  @graph """
  () => {
    const svg = document.querySelector('#timeline-topology');
    const view = document.querySelector('#view-timeline');
    const nodes = {};
    for (const g of svg.querySelectorAll('g.node:not(.leaving)')) nodes[g.dataset.node] = [g.dataset.status, g.dataset.group];
    return { groups: svg.querySelectorAll('.group.kind-partition:not(.leaving)').length, cuts: svg.querySelectorAll('.link.cut').length, live: view.dataset.live, position: view.dataset.position, nodes };
  }
  """

  test "scrubbing back shows the topology before the partition; playing returns to live",
       %{page: page, endpoint: ep} do
    ModeSwitch.allow()
    {:ok, %{nodes: [a, b, c]}} = Mode.set(:simulated, nodes: 3)
    c_name = Atom.to_string(c)

    # The last event before the split: c's arrival.
    before =
      ClusterScope.Cluster.State.events(0, 1000)
      |> Enum.filter(&(&1.type == :up and &1.node == c))
      |> List.last()

    assert before
    :ok = Simulator.partition([[c]])

    Browser.run!(page, [
      %{op: "goto", url: ep.url <> "/#tab=timeline"},
      %{op: "wait", selector: "#view-timeline[data-ready=true]", state: "attached"},
      # Live: the split, c alone on its side.
      %{
        op: "wait_fn",
        js:
          "() => document.querySelectorAll('#timeline-topology .group.kind-partition:not(.leaving)').length === 2",
        timeout: 20_000
      },
      %{op: "settled"},
      %{op: "screenshot", name: "timeline-live-split"}
    ])

    [_, _, earlier, _] =
      Browser.run!(page, [
        %{op: "click", selector: "#timeline-events li[data-id=\"#{before.id}\"]"},
        %{op: "settled"},
        %{op: "eval", js: @graph},
        %{op: "screenshot", name: "timeline-before-split"}
      ])

    assert earlier["live"] == "false"
    assert earlier["position"] == Integer.to_string(before.id)
    assert earlier["groups"] == 0
    assert earlier["cuts"] == 0
    assert [status, _] = earlier["nodes"][c_name]
    assert status == "up"
    assert Map.has_key?(earlier["nodes"], Atom.to_string(a))
    assert Map.has_key?(earlier["nodes"], Atom.to_string(b))

    # Play: the partition comes back, then live again.
    [_, _, later] =
      Browser.run!(page, [
        %{op: "click", selector: "#timeline-play"},
        %{
          op: "wait_fn",
          js: "() => document.querySelector('#view-timeline').dataset.live === 'true'",
          timeout: 30_000
        },
        %{op: "eval", js: @graph}
      ])

    assert later["groups"] == 2
    assert later["cuts"] > 0
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end
end
