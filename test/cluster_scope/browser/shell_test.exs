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

  test "the tab and the selected node live in the URL and survive a reload", %{
    page: page,
    endpoint: ep
  } do
    me = Atom.to_string(node())

    [_, _, _, _, tab, title] =
      Browser.run!(
        page,
        ready(ep.url <> "/#tab=timeline&node=" <> URI.encode_www_form(me)) ++
          [
            %{op: "eval", js: "() => location.reload()"},
            %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
            %{op: "attr", selector: ".tab.active", name: "data-view"},
            %{op: "text", selector: "#node-title"}
          ]
      )

    assert tab == "timeline"
    assert title == me

    # A key switches the tab; the URL follows.
    [_, _, hash] =
      Browser.run!(page, [
        %{op: "press", key: "1"},
        %{op: "wait", selector: "#view-overview", state: "attached"},
        %{op: "eval", js: "() => location.hash"}
      ])

    assert hash =~ "tab=overview"

    # Escape closes the node; ] selects one again (the next in the list).
    [_, _, _, stepped] =
      Browser.run!(page, [
        %{op: "press", key: "Escape"},
        %{op: "wait", selector: "#drawer", state: "hidden"},
        %{op: "press", key: "]"},
        %{op: "wait_fn", js: "() => new URLSearchParams(location.hash.slice(1)).get('node')"}
      ])

    assert stepped in Enum.map(
             ClusterScope.Cluster.State.topology().nodes,
             &Atom.to_string(&1.node)
           )

    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "? lists the shortcuts", %{page: page, endpoint: ep} do
    [_, _, _, _, text, _, open?] =
      Browser.run!(
        page,
        ready(ep.url <> "/") ++
          [
            %{op: "press", key: "?"},
            %{op: "wait", selector: "#help-dialog[open]"},
            %{op: "text", selector: "#help-table"},
            %{op: "screenshot", name: "shell-help"},
            %{
              op: "eval",
              js:
                "() => { document.querySelector('#help-dialog').close(); return document.querySelector('#help-dialog').open; }"
            }
          ]
      )

    assert text =~ "Open Overview"
    assert text =~ "Show these shortcuts"
    assert open? == false
  end

  test "a mutating action asks for the token once per session (sessionStorage, not the URL) and an error shows its message and remediation",
       %{page: page, endpoint: ep} do
    # allow_mode_switch is off here: set_mode is refused with a remediation.
    [_, _, _, _, _, _, _, message, remediation] =
      Browser.run!(
        page,
        ready(ep.url <> "/") ++
          [
            %{
              op: "eval",
              js:
                "() => { const s = document.querySelector('#mode-switch'); s.value = 'simulated'; s.dispatchEvent(new Event('change')); }"
            },
            %{op: "wait", selector: "#token-dialog[open]"},
            %{op: "fill", selector: "#token-input", value: @token},
            %{op: "click", selector: "#token-ok"},
            %{op: "wait", selector: "#errors .error"},
            %{op: "text", selector: "#errors .error .error-message"},
            %{op: "text", selector: "#errors .error .remediation"}
          ]
      )

    assert message =~ "allow_mode_switch"
    assert remediation =~ "allow_mode_switch: true"
    Browser.run!(page, [%{op: "screenshot", name: "shell-error"}])

    # Asked once: the second try goes straight to the API with the stored token.
    [_, _, _, dialogs, stored, href, all_text] =
      Browser.run!(page, [
        %{
          op: "eval",
          js: "() => document.querySelectorAll('#errors .error').forEach((e) => e.remove())"
        },
        %{
          op: "eval",
          js:
            "() => { const s = document.querySelector('#mode-switch'); s.value = 'local_cluster'; s.dispatchEvent(new Event('change')); }"
        },
        %{op: "wait", selector: "#errors .error"},
        %{op: "eval", js: "() => document.querySelector('#token-dialog').open"},
        %{op: "eval", js: "() => sessionStorage.getItem('cluster_scope.token')"},
        %{op: "eval", js: "() => location.href"},
        %{op: "text", selector: "#errors"}
      ])

    assert dialogs == false
    assert stored == @token
    refute href =~ @token
    # Message and remediation, never a stack trace.
    refute all_text =~ "Error:"
    refute all_text =~ ".js:"
    refute all_text =~ "** ("
    # The only console lines are chromium's for the two refused requests.
    errors = Browser.unexpected_errors(Browser.console_errors(page))
    assert length(errors) == 2
    assert Enum.all?(errors, &(&1["url"] =~ "/api/v1/cluster/mode" and &1["text"] =~ "403"))
  end

  test "simulated mode: the banner is on, and the mode switch goes back to the real cluster",
       %{page: page, endpoint: ep} do
    ClusterScope.Test.ModeSwitch.allow()
    {:ok, _} = ClusterScope.Mode.set(:simulated, nodes: 3)

    [_, _, banner_hidden, pill, _] =
      Browser.run!(
        page,
        ready(ep.url <> "/") ++
          [
            %{op: "eval", js: "() => document.querySelector('#sim-banner').hidden"},
            %{op: "text", selector: "#mode"},
            %{op: "screenshot", name: "shell-simulated"}
          ]
      )

    refute banner_hidden
    assert pill == "simulated"

    Browser.run!(page, [
      %{op: "eval", js: "(t) => sessionStorage.setItem('cluster_scope.token', t)", arg: @token},
      %{
        op: "eval",
        js:
          "() => { const s = document.querySelector('#mode-switch'); s.value = 'multi_node'; s.dispatchEvent(new Event('change')); }"
      },
      %{op: "wait", selector: "#sim-banner", state: "hidden", timeout: 30_000},
      %{op: "wait_fn", js: "() => document.querySelector('#mode').textContent === 'multi-node'"}
    ])

    assert ClusterScope.Mode.current() == :multi_node
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "read-only endpoint: no mode switch and no mutating control on the page", %{page: page} do
    read_only = Browser.start_endpoint(token: @token, read_only: true)
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(read_only) end)

    [_, _, switch_hidden, read_only_class, mode] =
      Browser.run!(
        page,
        ready(read_only.url <> "/#node=" <> URI.encode_www_form(Atom.to_string(node()))) ++
          [
            %{op: "eval", js: "() => document.querySelector('#mode-switch-wrap').hidden"},
            %{op: "eval", js: "() => document.body.classList.contains('read-only')"},
            %{op: "text", selector: "#mode"}
          ]
      )

    assert switch_hidden
    assert read_only_class
    # The mode is still shown.
    assert mode == "multi-node"

    [visible_mutating] =
      Browser.run!(page, [
        %{op: "wait", selector: "#drawer[data-loaded=true]", state: "attached"},
        %{
          op: "eval",
          js:
            "() => [...document.querySelectorAll('.mutating')].filter((e) => e.offsetParent !== null).length"
        }
      ])
      |> Enum.drop(1)

    assert visible_mutating == 0
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end
end
