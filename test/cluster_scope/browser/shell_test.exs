defmodule ClusterScope.Browser.ShellTest do
  # The dashboard shell in Debian's chromium: loads without a console
  # error, keeps its tab and node in the URL across a reload, asks for the
  # token once per session (sessionStorage, never the URL), shows an API
  # error's message and remediation (no stack trace), lists the shortcuts
  # on `?`, and shows the mode with a banner in simulated mode.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.Test.Browser

  @token "browser-shell-token-0123456789"

  setup_all do
    browser = start_supervised!(Browser)
    endpoint = Browser.start_endpoint(token: @token)
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    %{browser: browser, endpoint: endpoint}
  end

  setup %{browser: browser} do
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    %{page: page}
  end

  defp ready(url),
    do: [
      %{op: "goto", url: url},
      %{op: "wait", selector: "body[data-ready=true]", state: "attached"}
    ]

  test "the page loads with no console errors and draws this node", %{page: page, endpoint: ep} do
    [_, _, self_text, nodes, _] =
      Browser.run!(
        page,
        ready(ep.url <> "/") ++
          [
            %{op: "text", selector: "#node"},
            %{op: "wait_fn", js: "() => document.querySelectorAll('#topology g.node').length"},
            %{op: "screenshot", name: "shell-overview"}
          ]
      )

    assert self_text == Atom.to_string(node())
    assert nodes >= 1
    # The live indicator settles (SSE or, without it, polling).
    [transport] =
      Browser.run!(page, [
        %{
          op: "wait_fn",
          js:
            "() => document.querySelector('#live').dataset.connected === 'true' && document.querySelector('#live').dataset.transport"
        }
      ])

    assert transport in ["sse", "polling"]
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end
end
