defmodule ClusterScope.Browser.AlertsTest do
  # The Alerts view in Debian's chromium: an alert raised on this node
  # (its process-count threshold lowered under the count) appears in its
  # row without a reload, and leaves when it clears.
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
end
