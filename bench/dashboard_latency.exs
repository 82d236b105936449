# Dashboard latency on real nodes, measured in Debian's chromium: from a
# fault injected on real peers to the changed topology in the page's DOM,
# and from a new alert to the page showing it.
#
#   MIX_ENV=test mix run bench/dashboard_latency.exs          # 10 trials each
#   QUICK=1 MIX_ENV=test mix run bench/dashboard_latency.exs  # 3 trials each (< 2 min)
#   TRIALS=20 TRANSPORT=poll ...                               # more trials; force polling
#
# Needs root and iptables (the partition is real: iptables DROP between
# loopback aliases), chromium, node and node_modules/playwright-core (npm ci).
#
# Setup: 4 peers (a, b, c, d) with ClusterScope, a net tick time of 3 s, the
# bench node a hidden observer. Peer a serves the dashboard (an endpoint
# started on a, so the page shows a's view of the cluster), opened in
# headless chromium at 1280x800 on the overview. The page records, with
# Date.now(), every change of the graph (a MutationObserver on the SVG's
# data-status/data-groups and on the nodes' alert classes) and every cluster
# event it receives; browser and nodes share the machine's clock.
#
# Trials:
#   * partition: the cluster is healthy in the DOM for 1 s; {a, b} and
#     {c, d} are cut from each other (iptables, both ways). Measured:
#     inject -> the first change of the drawn topology (a node no longer
#     up, or the graph no longer healthy; detection included; target
#     p99 <= 1,500 ms), and the server's event (`at_ms` of the first
#     partition/suspect event a recorded) -> that DOM change (target
#     < 500 ms). Then healed, and the mesh waited for.
#   * alert: a process_count warning threshold of 1 is set on a (PUT
#     /api/v1/cluster/alerts/thresholds); measured: the alert's
#     `started_at_ms` on a -> the alert ring on a's node in the overview
#     (the Alerts view's row is another view; the same stream feeds both),
#     and threshold set -> ring (sampling interval included). Then the
#     threshold is removed and the ring waited away.
#
# Figures: p50 and p99 (nearest rank) over the trials, with the transport
# the page used (sse or polling: without GET /api/v1/stream the page polls
# the events cursor every 500 ms and the alerts every second).

alias ClusterScope.LocalCluster
alias ClusterScope.Test.{Browser, Cluster, HTTP, NodeWatcher}

quick = System.get_env("QUICK") == "1"
trials = String.to_integer(System.get_env("TRIALS") || if(quick, do: "3", else: "10"))
transport = System.get_env("TRANSPORT")
token = "dashboard-latency-bench-token-0123456789"

case Browser.available() do
  :ok -> :ok
  {:error, why} -> raise "the dashboard bench needs a browser: #{why}"
end

# Modules are defined before distribution starts (the compiler's processes
# must not change node name under it).
defmodule DashBench do
  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.{Browser, Cluster}

  def now, do: System.monotonic_time(:millisecond)
  def wall, do: System.system_time(:millisecond)

  def percentile([], _), do: nil

  def percentile(values, p) do
    sorted = Enum.sort(values)
    Enum.at(sorted, max(0, ceil(p / 100 * length(sorted)) - 1))
  end

  def fmt(nil), do: "n/a"
  def fmt(v), do: Integer.to_string(round(v))

  def run!(page, steps, timeout \\ 60_000), do: Browser.run!(page, steps, timeout)

  def dom_healthy?(page, names) do
    [ok] =
      run!(page, [
        %{
          op: "eval",
          js: """
          (names) => {
            const svg = document.querySelector('#topology');
            if (!svg || svg.dataset.status !== 'healthy') return false;
            return names.every((n) => {
              const g = svg.querySelector(`g.node[data-node="${n}"]`);
              return g && g.dataset.status === 'up';
            });
          }
          """,
          arg: names
        }
      ])

    ok
  end

  # Heal, reconnect and wait until a's classification and the DOM both
  # stay healthy for a second.
  def restore(peers, page, names) do
    Cluster.heal_all()

    ok =
      Cluster.poll(now() + 60_000, fn ->
        LocalCluster.connect_mesh(peers, :hidden)

        healthy =
          Enum.all?(peers, fn p ->
            match?(
              {:ok, %{classification: %{status: :healthy}}},
              safe_run(p, "partition_status")
            )
          end)

        healthy and dom_healthy?(page, names) and Process.sleep(1_000) == :ok and
          dom_healthy?(page, names)
      end)

    ok || raise "cluster (or its page) did not recover"
  end

  def safe_run(peer, op) do
    LocalCluster.call(peer, ClusterScope, :run, [op, %{}], 2_000)
  catch
    _, _ -> :error
  end
end

{:ok, _} = LocalCluster.ensure_distributed(name: "cluster_scope_dash_bench", net_ticktime: 3)

case Cluster.chaos_available?() do
  :ok -> :ok
  other -> raise "the dashboard bench injects real partitions (iptables, root): #{inspect(other)}"
end

Cluster.remove_stale_chains()

# Records graph changes and received events with the page's clock.
recorder = """
() => {
  window.__changes = [];
  window.__events = [];
  const svg = document.querySelector('#topology');
  const log = (kind, detail) => window.__changes.push({ t: Date.now(), kind, ...detail });
  new MutationObserver((muts) => {
    for (const m of muts) {
      const el = m.target;
      if (el === svg) log('graph', { status: svg.dataset.status, groups: svg.dataset.groups });
      else if (el.dataset && el.dataset.node && m.attributeName === 'class')
        log('node', { node: el.dataset.node, alert: /alert-(warning|critical)/.test(el.getAttribute('class')) });
      else if (el.dataset && el.dataset.node && m.attributeName === 'data-status')
        log('status', { node: el.dataset.node, status: el.dataset.status });
    }
  }).observe(svg, { attributes: true, subtree: true, attributeFilter: ['data-status', 'data-groups', 'class'] });
  window.__clusterScopeLive.on('cluster', (e) => window.__events.push({ t: Date.now(), id: e.id, type: e.type, at_ms: e.at_ms }));
  return document.querySelector('#live').dataset.transport;
}
"""

IO.puts("Starting 4 peers...")

{:ok, peers} =
  LocalCluster.start_peers(4,
    aliases: true,
    alias_base: Cluster.alias_base(),
    connection: :standard_io,
    link: false,
    connect: false,
    args: ["-kernel", "logger_level", "error"]
  )

for p <- peers do
  {:ok, _} = LocalCluster.call(p, NodeWatcher, :start, [])
end

:ok = LocalCluster.connect_mesh(peers, :hidden)
[a, b, c, d] = peers
names = Enum.map(peers, &Atom.to_string(&1.node))

{:ok, endpoint} =
  LocalCluster.call(a, ClusterScope.Web.Endpoint, :start, [[port: 0, token: token]])

{:ok, browser} = Browser.start_link()
page = Browser.open(browser)
hash = if transport == "poll", do: "#tab=overview&transport=poll", else: "#tab=overview"

DashBench.run!(page, [
  %{op: "goto", url: endpoint.url <> "/" <> hash},
  %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
  %{op: "eval", js: "(t) => sessionStorage.setItem('cluster_scope.token', t)", arg: token},
  %{op: "wait_fn", js: "() => document.querySelector('#live').dataset.connected === 'true'"}
])

[page_transport] = DashBench.run!(page, [%{op: "eval", js: recorder}])
IO.puts("Dashboard served by #{a.node} at #{endpoint.url}, page transport: #{page_transport}")

partition =
  for trial <- 1..trials do
    DashBench.restore(peers, page, names)

    DashBench.run!(page, [
      %{op: "eval", js: "() => { window.__changes = []; window.__events = []; }"}
    ])

    mark = LocalCluster.call(a, ClusterScope.Cluster.State, :events, [0, 1000]) |> List.last()
    mark = if mark, do: mark.id, else: 0

    injected = DashBench.wall()
    Cluster.cut_all(for(x <- [a, b], y <- [c, d], do: {x, y}))

    [change] =
      DashBench.run!(page, [
        %{
          op: "wait_fn",
          js:
            "(t0) => window.__changes.find((c) => c.t >= t0 && ((c.kind === 'graph' && c.status && c.status !== 'healthy') || (c.kind === 'status' && c.status !== 'up')))",
          arg: injected,
          timeout: 30_000,
          polling: 20
        }
      ])

    event =
      LocalCluster.call(a, ClusterScope.Cluster.State, :events, [mark, 1000])
      |> Enum.find(&(&1.type in [:partition, :suspect]))

    detect = change["t"] - injected
    to_dom = if event, do: change["t"] - event.at_ms, else: nil

    IO.puts(
      "partition trial #{trial}: inject->DOM #{detect} ms, server event->DOM #{DashBench.fmt(to_dom)} ms " <>
        "(first change: #{change["kind"]} #{change["node"]} #{change["status"]}; event #{event && event.type})"
    )

    if trial == 1, do: DashBench.run!(page, [%{op: "screenshot", name: "bench-partition"}])
    {detect, to_dom}
  end

DashBench.restore(peers, page, names)

set_threshold = fn value ->
  {status, _body, _} =
    HTTP.request(:put, endpoint.url <> "/api/v1/cluster/alerts/thresholds",
      body:
        ClusterScope.JSON.encode!(%{
          thresholds: %{process_count: %{warning: value}},
          node: Atom.to_string(a.node)
        }),
      headers: [{"authorization", "Bearer " <> token}]
    )

  200 = status
end

alert_selector = "#topology g.node[data-node=\"#{a.node}\"]"

alerts =
  for trial <- 1..trials do
    DashBench.run!(page, [%{op: "eval", js: "() => { window.__changes = []; }"}])
    injected = DashBench.wall()
    set_threshold.(1)

    [change] =
      DashBench.run!(page, [
        %{
          op: "wait_fn",
          js:
            "([n, t0]) => window.__changes.find((c) => c.kind === 'node' && c.node === n && c.alert && c.t >= t0)",
          arg: [Atom.to_string(a.node), injected],
          timeout: 30_000,
          polling: 20
        }
      ])

    {:ok, %{alerts: list}} = LocalCluster.call(a, ClusterScope, :run, ["cluster_alerts", %{}])
    alert = Enum.find(list, &(&1.metric == :process_count and &1.node == a.node))
    to_dom = if alert, do: change["t"] - alert.started_at_ms, else: nil
    detect = change["t"] - injected

    IO.puts(
      "alert trial #{trial}: threshold set->DOM #{detect} ms, alert started->DOM #{DashBench.fmt(to_dom)} ms"
    )

    set_threshold.(nil)

    DashBench.run!(page, [
      %{
        op: "wait_fn",
        js:
          "(sel) => { const g = document.querySelector(sel); return g && !/alert-/.test(g.getAttribute('class')); }",
        arg: alert_selector,
        timeout: 30_000
      }
    ])

    {detect, to_dom}
  end

Browser.close(page)
GenServer.stop(browser)
Cluster.cleanup(peers)
Cluster.remove_chain()

for {event, rows} <- [{"partition", partition}, {"alert", alerts}] do
  total = Enum.map(rows, &elem(&1, 0))
  server = rows |> Enum.map(&elem(&1, 1)) |> Enum.reject(&is_nil/1)

  IO.puts(
    "RESULT bench=dashboard_latency event=#{event} transport=#{page_transport} trials=#{length(rows)} " <>
      "p50_ms=#{DashBench.fmt(DashBench.percentile(total, 50))} p99_ms=#{DashBench.fmt(DashBench.percentile(total, 99))} " <>
      "server_to_dom_p50_ms=#{DashBench.fmt(DashBench.percentile(server, 50))} " <>
      "server_to_dom_p99_ms=#{DashBench.fmt(DashBench.percentile(server, 99))}"
  )
end
