defmodule ClusterScope.Browser.StreamTest do
  # Live updates in Debian's chromium: the page keeps receiving cluster
  # events across an endpoint restart, each once and in order, none lost
  # (the events of the downtime are delivered after the reconnect): by
  # polling the events cursor, and by Server-Sent Events resumed with
  # Last-Event-ID when this build serves /api/v1/stream.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.{Mode, Simulator}
  alias ClusterScope.Test.{Browser, ModeSwitch}
  alias ClusterScope.Web.Endpoint

  @token "browser-stream-token-0123456789"

  setup_all do
    %{browser: start_supervised!(Browser)}
  end

  setup %{browser: browser} do
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    ModeSwitch.allow()
    endpoint = Browser.start_endpoint(token: @token)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{page: page, endpoint: endpoint}
  end

  @record """
  () => {
    window.__seen = [];
    window.__clusterScopeLive.on('cluster', (e) => window.__seen.push(e.id));
    return window.__clusterScopeLive.lastClusterId;
  }
  """

  defp reconnects_without_loss(page, ep, hash, transport) do
    {:ok, %{nodes: [_, _, c]}} = Mode.set(:simulated, nodes: 3)

    [_, _, _, from] =
      Browser.run!(page, [
        %{op: "goto", url: ep.url <> "/" <> hash},
        %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
        %{
          op: "wait_fn",
          js:
            "(t) => { const l = document.querySelector('#live'); return l.dataset.connected === 'true' && l.dataset.transport === t; }",
          arg: transport
        },
        %{op: "eval", js: @record}
      ])

    # While the endpoint is down, the cluster changes.
    :ok = Endpoint.stop(ep)

    Browser.run!(page, [
      %{
        op: "wait_fn",
        js: "() => document.querySelector('#live').dataset.connected === 'false'",
        timeout: 20_000
      }
    ])

    :ok = Simulator.partition([[c]])

    Browser.eventually(fn ->
      Enum.any?(ClusterScope.Cluster.State.events(from, 1000), &(&1.type == :partition))
    end)

    restarted = Browser.start_endpoint(token: @token, port: ep.port)
    on_exit(fn -> Endpoint.stop(restarted) end)
    :ok = Simulator.heal()

    expected =
      Browser.eventually(fn ->
        events = ClusterScope.Cluster.State.events(from, 1000)
        Enum.any?(events, &(&1.type == :heal)) && Enum.map(events, & &1.id)
      end)

    [seen] =
      Browser.run!(page, [
        %{
          op: "wait_fn",
          js:
            "(ids) => { const s = window.__seen; return ids.every((id) => s.includes(id)) && s; }",
          arg: expected,
          timeout: 30_000
        }
      ])

    # Each once, in order, none missing.
    assert seen == Enum.sort(Enum.uniq(seen))
    assert Enum.take(seen, length(expected)) == expected

    Browser.run!(page, [
      %{
        op: "wait_fn",
        js:
          "(t) => { const l = document.querySelector('#live'); return l.dataset.connected === 'true' && l.dataset.transport === t; }",
        arg: transport
      },
      %{op: "screenshot", name: "stream-reconnected-#{transport}"}
    ])
  end

  test "polling: events during an endpoint restart all arrive after it, once, in order",
       %{page: page, endpoint: ep} do
    reconnects_without_loss(page, ep, "#transport=poll", "polling")
  end

  unless Browser.stream_available?() do
    @tag skip:
           "this build has no GET /api/v1/stream (ClusterScope.Web.Stream): runs once it lands"
  end

  test "SSE: the stream resumes from Last-Event-ID after an endpoint restart, losing nothing",
       %{page: page, endpoint: ep} do
    reconnects_without_loss(page, ep, "", "sse")
  end
end
