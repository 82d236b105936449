defmodule ClusterScope.Browser.AlertsTest do
  # The Alerts view in Debian's chromium: an alert raised on this node
  # (its process-count threshold lowered under the count) appears in its
  # row without a reload, and leaves when it clears. And its neighbour, the
  # operation latency view: p50 and p99 of each operation, per node.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.Health
  alias ClusterScope.Test.Browser

  setup_all do
    browser = start_supervised!(Browser)
    endpoint = Browser.start_endpoint(token: "browser-alerts-token-0123456789")
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    %{browser: browser, endpoint: endpoint}
  end

  setup %{browser: browser} do
    Health.reset_alert_thresholds()
    Health.sample_now()
    on_exit(fn -> Health.reset_alert_thresholds() end)
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    %{page: page}
  end

  test "a new alert appears in its row, and goes when it clears", %{page: page, endpoint: ep} do
    me = Atom.to_string(node())
    row = ~s(#alerts-table tr[data-metric="process_count"][data-node="#{me}"])

    [_, _, _, before] =
      Browser.run!(page, [
        %{op: "goto", url: ep.url <> "/#tab=alerts"},
        %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
        %{
          op: "wait_fn",
          js: "() => /checked/.test(document.querySelector('.vb-alerts .vb-status').textContent)"
        },
        %{op: "count", selector: row}
      ])

    assert before == 0

    {:ok, _} =
      Health.set_alert_thresholds(%{process_count: %{warning: div(length(Process.list()), 2)}})

    Health.sample_now()
    raised_at = System.monotonic_time(:millisecond)

    [_, severity, text] =
      Browser.run!(page, [
        %{op: "wait", selector: row, timeout: 15_000},
        %{op: "text", selector: row <> " td:first-child"},
        %{op: "text", selector: row}
      ])

    shown_after = System.monotonic_time(:millisecond) - raised_at
    assert severity == "warning"
    assert text =~ "process_count"
    # Generous: the stream brings it at once, the poll within 5 s.
    assert shown_after < 12_000
    Browser.run!(page, [%{op: "screenshot", name: "alerts-raised"}])

    Health.reset_alert_thresholds()

    Browser.eventually(
      fn ->
        Health.sample_now() && not Enum.any?(Health.alerts(), &(&1.metric == :process_count))
      end,
      15_000
    )

    Browser.run!(page, [%{op: "wait", selector: row, state: "detached", timeout: 15_000}])
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "operation latency shows p50 and p99 of each operation for each node, as the API has them",
       %{page: page, endpoint: ep} do
    me = Atom.to_string(node())
    # Something to measure: a few calls through the runner.
    for _ <- 1..3, do: {:ok, _} = ClusterScope.run("list_operations", %{})
    cell = ~s(#latency-table tr[data-op="list_operations"] td[data-node="#{me}"])
    # What the API has before the page loads: every one of them is a row.
    {:ok, %{operations: api_ops}} = ClusterScope.run("operation_metrics", %{})

    [_, _, _, pair, ops, _] =
      Browser.run!(page, [
        %{op: "goto", url: ep.url <> "/#tab=latency"},
        %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
        %{op: "wait", selector: cell},
        %{op: "text", selector: cell},
        %{
          op: "eval",
          js:
            "() => [...document.querySelectorAll('#latency-table tbody tr')].map((tr) => tr.dataset.op)"
        },
        %{op: "screenshot", name: "latency"}
      ])

    assert pair =~ ~r/^\d+(\.\d+)? (µs|ms|s) · \d+(\.\d+)? (µs|ms|s)$/u
    assert MapSet.subset?(MapSet.new(api_ops, & &1.name), MapSet.new(ops))

    # One node's full figures: p50, p90, p99, p99.9, max.
    [_, _, head] =
      Browser.run!(page, [
        %{op: "click", selector: "#latency-table th.vb-node-col button"},
        %{op: "wait", selector: "#latency-table th:nth-child(6)"},
        %{op: "text", selector: "#latency-table thead"}
      ])

    assert head =~ "p99.9"
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end
end
