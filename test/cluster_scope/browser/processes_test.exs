defmodule ClusterScope.Browser.ProcessesTest do
  # The Processes view in Debian's chromium: a kill without the token is
  # refused (cancelled prompt, then a wrong token the server refuses) and
  # the process lives; with the token it is gone, and the token is asked
  # once per browser session (sessionStorage, never the URL). Mutating
  # actions are absent on a read-only endpoint. Filter, sort, page and
  # window mode drive the table.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.{Browser, Cluster}

  @token "browser-processes-token-0123456789"

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

  # The row of a process, refreshing the table until the process's node has
  # a snapshot that holds it (snapshots are shared for up to a second).
  defp await_row(pid_text) do
    %{
      op: "wait_fn",
      arg: pid_text,
      polling: 700,
      timeout: 20_000,
      js: """
      (pid) => {
        if (document.querySelector(`#process-table tr[data-pid="${pid}"]`)) return true;
        const refresh = document.querySelector('.vb-processes [data-action=refresh]');
        if (refresh) refresh.click();
        return false;
      }
      """
    }
  end

  defp unique(prefix), do: :"#{prefix}_#{System.unique_integer([:positive])}"

  defp spawn_target(name) do
    pid =
      spawn(fn ->
        Process.register(self(), name)

        receive do
          :stop -> :ok
        end
      end)

    on_exit(fn -> send(pid, :stop) end)
    wait_registered(name)
    pid
  end

  defp wait_registered(name) do
    Browser.eventually(fn -> Process.whereis(name) end, 2_000)
  end

  # A refused call leaves the browser's own "Failed to load resource: 401"
  # line in the console: expected here, and nothing else is.
  defp unexpected(errors) do
    errors
    |> Browser.unexpected_errors()
    |> Enum.reject(&String.contains?(&1["text"] || "", "status of 401"))
  end

  test "a kill without the token is refused and with it works: the process is gone",
       %{page: page, endpoint: ep} do
    name = unique(:uib_kill_target)
    target = spawn_target(name)
    pid_text = ProcessRef.to_string(target)
    row = ~s(#process-table tr[data-pid="#{pid_text}"])

    {:ok, info_target} = Agent.start(fn -> %{answer: 4242} end, name: unique(:uib_info_target))
    on_exit(fn -> Process.alive?(info_target) && Agent.stop(info_target) end)
    info_text = ProcessRef.to_string(info_target)

    Browser.run!(
      page,
      ready(ep.url <> "/#tab=processes&procs.name=uib_*_target_*") ++
        [
          await_row(pid_text),
          await_row(info_text),
          # No token yet: cancel the prompt.
          %{op: "click", selector: row <> " [data-action=kill]"},
          %{op: "wait", selector: "dialog[data-dialog=kill]"},
          %{op: "click", selector: "[data-confirm=kill]"},
          %{op: "wait", selector: "#token-dialog[open]"},
          %{op: "screenshot", name: "processes-token-prompt"},
          %{op: "click", selector: "#token-cancel"},
          %{op: "wait", selector: "dialog[data-dialog=kill] [data-result=refused]"}
        ]
    )

    [refusal] =
      Browser.run!(page, [%{op: "text", selector: "dialog[data-dialog=kill] [data-result]"}])

    assert refusal =~ "token"
    assert Process.alive?(target)

    # A wrong token: the server refuses it (401), the page forgets it and
    # asks again; cancelled, the refusal shows the server's message.
    message =
      page
      |> Browser.run!([
        %{op: "click", selector: "[data-confirm=kill]"},
        %{op: "wait", selector: "#token-dialog[open]"},
        %{op: "fill", selector: "#token-input", value: "not-the-token-0123456789"},
        %{op: "click", selector: "#token-ok"},
        %{op: "wait", selector: "#token-dialog[open]"},
        %{op: "click", selector: "#token-cancel"},
        %{
          op: "wait_fn",
          js: """
          () => {
            const el = document.querySelector('dialog[data-dialog=kill] [data-result=refused]');
            return el && /not valid/.test(el.textContent) && el.textContent;
          }
          """
        }
      ])
      |> List.last()

    assert message =~ "the bearer token is not valid"
    assert Process.alive?(target)

    # The right token: the process exits, and the row says so.
    [_, _, _, _, _, result, _] =
      Browser.run!(page, [
        %{op: "click", selector: "[data-confirm=kill]"},
        %{op: "wait", selector: "#token-dialog[open]"},
        %{op: "fill", selector: "#token-input", value: @token},
        %{op: "click", selector: "#token-ok"},
        %{op: "wait", selector: "dialog[data-dialog=kill] [data-result=exited]"},
        %{op: "text", selector: "dialog[data-dialog=kill] [data-result]"},
        %{op: "screenshot", name: "processes-killed"}
      ])

    assert result =~ "Exited"
    refute Process.alive?(target)

    # Once per session: the info (sensitive) of another process needs no
    # new prompt, and shows its state. The token is in sessionStorage,
    # never in the URL.
    info_row = ~s(#process-table tr[data-pid="#{info_text}"])

    [_, _, _, state_text, prompts, in_url, stored] =
      Browser.run!(page, [
        %{op: "click", selector: "dialog[data-dialog=kill] .vb-close"},
        %{op: "wait", selector: "dialog[data-dialog=kill]", state: "detached"},
        %{op: "click", selector: info_row <> " [data-action=info]"},
        %{op: "text", selector: "dialog[data-dialog=info] [data-field=state]"},
        %{op: "count", selector: "#token-dialog[open]"},
        %{op: "eval", arg: @token, js: "(t) => location.href.includes(t)"},
        %{op: "eval", js: "() => sessionStorage.getItem('cluster_scope.token')"}
      ])

    assert state_text =~ "4242"
    assert prompts == 0
    assert in_url == false
    assert stored == @token

    Browser.run!(page, [%{op: "screenshot", name: "processes-info"}])
    assert unexpected(Browser.console_errors(page)) == []
  end

  test "a message sent from the table arrives as the term the JSON names", %{
    page: page,
    endpoint: ep
  } do
    test_pid = self()
    name = unique(:uib_send_target)

    target =
      spawn(fn ->
        Process.register(self(), name)

        receive do
          message -> send(test_pid, {:got, message})
        end
      end)

    on_exit(fn -> Process.exit(target, :kill) end)
    wait_registered(name)
    pid_text = ProcessRef.to_string(target)
    row = ~s(#process-table tr[data-pid="#{pid_text}"])

    Browser.run!(
      page,
      ready(ep.url <> "/#tab=processes&procs.name=uib_send_target_*") ++
        [
          await_row(pid_text),
          %{op: "click", selector: row <> " [data-action=send]"},
          %{op: "wait", selector: "dialog[data-dialog=send]"},
          %{
            op: "fill",
            selector: "dialog[data-dialog=send] textarea[name=message]",
            value: ~s({"$tuple": [{"$atom": "hello"}, 42, "text"]})
          },
          %{op: "click", selector: "[data-confirm=send]"},
          %{op: "wait", selector: "#token-dialog[open]"},
          %{op: "fill", selector: "#token-input", value: @token},
          %{op: "click", selector: "#token-ok"},
          %{op: "wait", selector: "dialog[data-dialog=send] [data-result=delivered]"},
          %{op: "screenshot", name: "processes-sent"}
        ]
    )

    assert_receive {:got, {:hello, 42, "text"}}, 5_000

    # A dialog belongs to its view: leaving the view (here the back
    # button's way, a changed URL) closes it.
    Browser.run!(page, [
      %{op: "click", selector: "dialog[data-dialog=send] .vb-close"},
      %{op: "wait", selector: "dialog[data-dialog=send]", state: "detached"},
      %{op: "click", selector: row <> " [data-action=kill]"},
      %{op: "wait", selector: "dialog[data-dialog=kill]"},
      %{op: "eval", js: "() => { location.hash = '#tab=alerts'; return true; }"},
      %{op: "wait", selector: "#tab-alerts.active"},
      %{op: "wait", selector: "dialog[data-dialog]", state: "detached"}
    ])

    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  @tag :cluster
  test "a process on a peer node is listed with its node and killed from the table",
       %{page: page, endpoint: ep} do
    [peer] = Cluster.start(1, observer: :visible)
    name = unique(:uib_peer_target)
    target = Node.spawn(peer.node, :timer, :sleep, [:infinity])
    true = :erpc.call(peer.node, :erlang, :register, [name, target])
    pid_text = ProcessRef.to_string(target)
    row = ~s(#process-table tr[data-pid="#{pid_text}"])

    [_, _, _, node_of_row | _] =
      Browser.run!(
        page,
        ready(ep.url <> "/#tab=processes&procs.name=uib_peer_target_*") ++
          [
            await_row(pid_text),
            %{op: "attr", selector: row, name: "data-node"},
            %{op: "click", selector: row <> " [data-action=kill]"},
            %{op: "click", selector: "[data-confirm=kill]"},
            %{op: "wait", selector: "#token-dialog[open]"},
            %{op: "fill", selector: "#token-input", value: @token},
            %{op: "click", selector: "#token-ok"},
            %{op: "wait", selector: "dialog[data-dialog=kill] [data-result=exited]"},
            %{op: "screenshot", name: "processes-peer-killed"}
          ]
      )

    assert node_of_row == Atom.to_string(peer.node)
    refute :erpc.call(peer.node, :erlang, :is_process_alive, [target])
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "mutating actions are absent on a read-only endpoint; info stays", %{browser: browser} do
    endpoint = Browser.start_endpoint(token: @token, read_only: true)
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    page = Browser.open(browser)
    target = spawn_target(unique(:uib_ro_target))

    [_, _, _, kills, sends, traces, infos | _] =
      Browser.run!(
        page,
        ready(endpoint.url <> "/#tab=processes&procs.name=uib_ro_target_*") ++
          [
            await_row(ProcessRef.to_string(target)),
            %{op: "count", selector: "#process-table [data-action=kill]"},
            %{op: "count", selector: "#process-table [data-action=send]"},
            %{op: "count", selector: "#process-table [data-action=trace]"},
            %{op: "count", selector: "#process-table [data-action=info]"},
            # And says why the actions are missing.
            %{op: "wait", selector: ".vb-processes [data-readonly=true]"},
            %{op: "screenshot", name: "processes-read-only"}
          ]
      )

    assert {kills, sends, traces} == {0, 0, 0}
    assert infos >= 1
    Browser.close(page)
  end

  test "filter, sort, page and window mode", %{page: page, endpoint: ep} do
    # A filter by type: every row is a supervisor, and the URL keeps it.
    [_, _, _, types, hash] =
      Browser.run!(
        page,
        ready(ep.url <> "/#tab=processes&procs.type=supervisor&procs.limit=25") ++
          [
            %{op: "wait", selector: "#process-table tr[data-pid]"},
            %{
              op: "eval",
              js:
                "() => [...document.querySelectorAll('#process-table tr[data-pid] td:nth-child(4)')].map((td) => td.textContent)"
            },
            %{op: "eval", js: "() => location.hash"}
          ]
      )

    assert types != [] and Enum.all?(types, &(&1 == "supervisor"))
    assert hash =~ "procs.type=supervisor"

    # Sorted by reductions by a click on its header: largest first.
    [_, _, reductions] =
      Browser.run!(page, [
        %{op: "click", selector: "#process-table [data-sort=reductions]"},
        %{op: "wait", selector: "#process-table th.vb-active [data-sort=reductions]"},
        %{
          op: "eval",
          js:
            "() => [...document.querySelectorAll('#process-table tr[data-pid] td:nth-child(6)')].map((td) => Number(td.textContent.replace(/,/g, '')))"
        }
      ])

    assert reductions != []
    assert reductions == Enum.sort(reductions, :desc)

    # Pages: the second page has other processes than the first.
    [first, _, _, second, _, _, back] =
      Browser.run!(
        page,
        ready(ep.url <> "/#tab=processes&procs.limit=25") ++
          [
            %{op: "wait", selector: "#process-table tr[data-pid]"},
            %{op: "eval", js: pids_js()},
            %{op: "click", selector: "[data-page=next]"},
            %{
              op: "wait_fn",
              js: "() => document.querySelector('.vb-page').textContent === 'Page 2'"
            },
            %{op: "eval", js: pids_js()},
            %{op: "click", selector: "[data-page=prev]"},
            %{
              op: "wait_fn",
              js: "() => document.querySelector('.vb-page').textContent === 'Page 1'"
            },
            %{op: "eval", js: pids_js()}
          ]
      )
      |> Enum.drop(3)

    assert length(first) == 25
    assert second != [] and MapSet.disjoint?(MapSet.new(first), MapSet.new(second))
    assert length(back) == 25

    # Window mode: ranked by change over 1 s, reductions per second shown.
    [_, _, _, header] =
      Browser.run!(
        page,
        ready(ep.url <> "/#tab=processes&procs.window=1000&procs.sort=reductions") ++
          [
            %{op: "wait", selector: "#process-table tr[data-pid]", timeout: 20_000},
            %{op: "text", selector: "#process-table thead"}
          ]
      )

    assert header =~ "Reductions/s"
    Browser.run!(page, [%{op: "screenshot", name: "processes-window"}])
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  defp pids_js,
    do:
      "() => [...document.querySelectorAll('#process-table tr[data-pid]')].map((tr) => tr.dataset.pid)"
end
