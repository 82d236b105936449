defmodule UibTraceTarget do
  @moduledoc false
  # A function for the function-pattern session (not a ClusterScope module:
  # those are never traced).
  def work(x), do: x * 2
end

defmodule ClusterScope.Browser.TracesTest do
  # Trace sessions in Debian's chromium: a session started from the UI on a
  # process (opened from its row in the Processes view) shows its events
  # and counters live and stops from the UI; one on a function pattern
  # shows its calls.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.Browser

  @token "browser-traces-token-0123456789"

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

  # A receiver registered under `name` and a sender ticking it every 25 ms.
  defp workload(name, fun \\ fn _ -> :ok end) do
    receiver =
      spawn(fn ->
        Process.register(self(), name)
        loop(fun)
      end)

    sender = spawn(fn -> tick(receiver, 0) end)

    on_exit(fn ->
      Process.exit(sender, :kill)
      Process.exit(receiver, :kill)
    end)

    Browser.eventually(fn -> Process.whereis(name) end, 2_000)
    receiver
  end

  defp loop(fun) do
    receive do
      {:tick, n} ->
        fun.(n)
        loop(fun)
    end
  end

  defp tick(pid, n) do
    send(pid, {:tick, n})
    Process.sleep(25)
    tick(pid, n + 1)
  end

  defp token_steps,
    do: [
      %{op: "wait", selector: "#token-dialog[open]"},
      %{op: "fill", selector: "#token-input", value: @token},
      %{op: "click", selector: "#token-ok"}
    ]

  defp kept_js,
    do:
      "() => { const el = document.querySelector('[data-counter=kept] .vb-counter-value'); const n = el && Number(el.textContent.replace(/,/g, '')); return n > 0 && n; }"

  test "a session started on a process shows its events and counters, and stops",
       %{page: page, endpoint: ep} do
    name = :"uib_trace_rcv_#{System.unique_integer([:positive])}"
    receiver = workload(name)
    pid_text = ProcessRef.to_string(receiver)
    row = ~s(#process-table tr[data-pid="#{pid_text}"])

    # From the process's row: Trace opens the trace view with it filled in.
    results =
      Browser.run!(
        page,
        [
          %{op: "goto", url: ep.url <> "/#tab=processes&procs.name=uib_trace_rcv_*"},
          %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
          %{
            op: "wait_fn",
            arg: pid_text,
            polling: 700,
            timeout: 20_000,
            js:
              "(pid) => { if (document.querySelector(`#process-table tr[data-pid=\"${pid}\"]`)) return true; document.querySelector('.vb-processes [data-action=refresh]').click(); return false; }"
          },
          %{op: "click", selector: row <> " [data-action=trace]"},
          %{op: "wait", selector: "#tab-traces.active"}
        ] ++
          token_steps() ++
          [
            %{op: "attr", selector: ".vb-trace-form input[name=process]", name: "value"},
            %{op: "click", selector: "[data-action=start-trace]"},
            %{
              op: "wait_fn",
              js:
                "() => { const el = document.querySelector('[data-field=session-status]'); return el && el.textContent === 'running'; }"
            },
            %{
              op: "wait_fn",
              timeout: 15_000,
              js:
                "() => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= 3"
            },
            # Counters come from list_trace_sessions once a second, which asks
            # every session's tracers (earlier tests' included) for their
            # stats: on a loaded machine a CI run needed more than 15 s.
            %{op: "wait_fn", timeout: 40_000, js: kept_js()},
            %{op: "screenshot", name: "traces-running"},
            %{
              op: "eval",
              js:
                "() => [...document.querySelectorAll('#trace-events tbody tr[data-kind=receive] td:last-child')].map((td) => td.textContent)"
            }
          ],
        120_000
      )

    [prefilled, _, _, _, kept, _, messages] = Enum.drop(results, 8)
    assert prefilled == pid_text
    assert kept > 0
    assert Enum.any?(messages, &(&1 =~ ~r/\{:tick, \d+\}/))

    [{session_id, _}] =
      for s <- elem(ClusterScope.Trace.list(0, 100), 0),
          s.target == pid_text,
          s.status == :running,
          do: {s.id, s}

    # Stop from the UI: the status turns stopped everywhere.
    [_, _, _, counters] =
      Browser.run!(page, [
        %{op: "click", selector: "[data-action=stop-trace]"},
        %{
          op: "wait_fn",
          timeout: 15_000,
          js:
            "() => document.querySelector('[data-field=session-status]').textContent === 'stopped'"
        },
        %{op: "screenshot", name: "traces-stopped"},
        %{
          op: "eval",
          js:
            "() => Object.fromEntries([...document.querySelectorAll('[data-counter]')].map((el) => [el.dataset.counter, el.querySelector('.vb-counter-value').textContent]))"
        }
      ])

    assert {:ok, %{status: :stopped}} = ClusterScope.Trace.get(session_id)
    assert Map.keys(counters) |> Enum.sort() == ~w(dropped kept overhead pauses seen)
    assert counters["overhead"] =~ "%"
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "a session on a function pattern shows its calls", %{page: page, endpoint: ep} do
    name = :"uib_trace_fun_#{System.unique_integer([:positive])}"
    workload(name, fn n -> UibTraceTarget.work(n) end)

    results =
      Browser.run!(
        page,
        [
          %{op: "goto", url: ep.url <> "/#tab=traces"},
          %{op: "wait", selector: "body[data-ready=true]", state: "attached"}
        ] ++
          token_steps() ++
          [
            %{op: "click", selector: ".vb-trace-form label:has(input[value=function]) span"},
            %{op: "fill", selector: ".vb-trace-form input[name=module]", value: "UibTraceTarget"},
            %{op: "fill", selector: ".vb-trace-form input[name=function]", value: "work"},
            %{op: "fill", selector: ".vb-trace-form input[name=arity]", value: "1"},
            %{op: "click", selector: ".vb-trace-form input[name=return]"},
            %{op: "click", selector: "[data-action=start-trace]"},
            %{
              op: "wait_fn",
              timeout: 15_000,
              js:
                "() => document.querySelectorAll('#trace-events tbody tr[data-kind=call]').length >= 2 && document.querySelectorAll('#trace-events tbody tr[data-kind=return]').length >= 1"
            },
            %{
              op: "eval",
              js:
                "() => [...document.querySelectorAll('#trace-events tbody tr[data-kind=call] td:last-child')].map((td) => td.textContent)"
            },
            %{op: "screenshot", name: "traces-function"},
            %{op: "click", selector: "[data-action=stop-trace]"},
            %{
              op: "wait_fn",
              timeout: 15_000,
              js:
                "() => document.querySelector('[data-field=session-status]').textContent === 'stopped'"
            }
          ]
      )

    calls = Enum.at(results, 12)
    assert calls != [] and Enum.all?(calls, &(&1 =~ "UibTraceTarget.work/1"))
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  # Counts the page's reads of trace events (GET .../trace/sessions/:id/events)
  # from now on.
  @count_reads """
  () => {
    window.__eventReads = 0;
    if (!window.__fetchWrapped) {
      const orig = window.fetch;
      window.fetch = (input, init) => {
        const url = String(input && input.url ? input.url : input);
        if (/\\/trace\\/sessions\\/[^/]+\\/events/.test(url)) window.__eventReads += 1;
        return orig(input, init);
      };
      window.__fetchWrapped = true;
    }
    window.__base = document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length;
    return window.__base;
  }
  """

  defp receive_session do
    name = :"uib_trace_sse_#{System.unique_integer([:positive])}"
    receiver = workload(name)

    {:ok, session} =
      ClusterScope.Trace.start(%{
        process: ProcessRef.from_pid(receiver),
        messages: :receive,
        duration_ms: 120_000,
        max_events: 100_000,
        rate: 500
      })

    session.id
  end

  test "a selected session's events come through the live stream, not by polling",
       %{page: page, endpoint: ep} do
    id = receive_session()
    topic = "trace:" <> id

    results =
      Browser.run!(
        page,
        [
          %{op: "goto", url: ep.url <> "/#tab=traces&trace.session=" <> id},
          %{op: "wait", selector: "body[data-ready=true]", state: "attached"}
        ] ++
          token_steps() ++
          [
            %{
              op: "wait",
              selector: "#view-traces[data-events-transport=stream]",
              state: "attached",
              timeout: 20_000
            },
            %{
              op: "wait_fn",
              timeout: 20_000,
              js:
                "() => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= 3"
            },
            %{op: "eval", js: @count_reads},
            # New events keep coming while no read of the events is made.
            %{
              op: "wait_fn",
              timeout: 20_000,
              js:
                "() => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= Math.min(500, window.__base + 10)"
            },
            %{op: "eval", js: "() => window.__eventReads"},
            %{op: "eval", js: "() => window.__clusterScopeLive.currentTopics()"},
            %{
              op: "eval",
              js:
                "() => [...document.querySelectorAll('#trace-events tbody tr[data-kind=receive] td:last-child')].map((td) => td.textContent)"
            },
            %{op: "text", selector: ".vb-events-head .vb-dim"},
            %{op: "screenshot", name: "traces-streamed"}
          ]
      )

    [reads, topics, messages, note, _] = Enum.take(results, -5)
    assert reads == 0
    assert topic in topics and "cluster" in topics and "alerts" in topics
    assert Enum.any?(messages, &(&1 =~ ~r/\{:tick, \d+\}/))
    # Each event once (a reconnect may repeat a read: the view drops it).
    assert length(Enum.uniq(messages)) == length(messages)
    assert note =~ "streamed"

    # Stopping the session: the status turns stopped over the stream; then
    # leaving the view drops the topic and the stream goes on with the base
    # topics, connected.
    [_, _, _, _, after_topics, live, reads_after] =
      Browser.run!(page, [
        %{op: "click", selector: "[data-action=stop-trace]"},
        %{
          op: "wait_fn",
          timeout: 15_000,
          js:
            "() => document.querySelector('[data-field=session-status]').textContent === 'stopped'"
        },
        %{op: "press", key: "1"},
        %{
          op: "wait_fn",
          timeout: 15_000,
          arg: topic,
          js:
            "(t) => !window.__clusterScopeLive.currentTopics().includes(t) && window.__clusterScopeLive.connected"
        },
        %{op: "eval", js: "() => window.__clusterScopeLive.currentTopics()"},
        %{op: "attr", selector: "#live", name: "data-connected"},
        %{op: "eval", js: "() => window.__eventReads"}
      ])

    assert Enum.sort(after_topics) == ["alerts", "cluster"]
    assert live == "true"
    assert reads_after == 0
    assert {:ok, %{status: :stopped}} = ClusterScope.Trace.get(id)
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "without the live stream the view polls the session's events",
       %{page: page, endpoint: ep} do
    id = receive_session()

    results =
      Browser.run!(
        page,
        [
          %{op: "goto", url: ep.url <> "/#tab=traces&transport=poll&trace.session=" <> id},
          %{op: "wait", selector: "body[data-ready=true]", state: "attached"}
        ] ++
          token_steps() ++
          [
            %{op: "eval", js: @count_reads},
            %{
              op: "wait",
              selector: "#view-traces[data-events-transport=poll]",
              state: "attached"
            },
            %{
              op: "wait_fn",
              timeout: 20_000,
              js:
                "() => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= 3"
            },
            %{
              op: "wait_fn",
              timeout: 20_000,
              js: "() => window.__eventReads >= 2 && window.__eventReads"
            },
            %{op: "eval", js: "() => window.__clusterScopeLive.transport"},
            %{op: "attr", selector: "#view-traces", name: "data-events-transport"},
            %{op: "text", selector: ".vb-events-head .vb-dim"}
          ]
      )

    [reads, transport, view_transport, note] = Enum.take(results, -4)
    assert reads >= 2
    assert transport == "polling"
    assert view_transport == "poll"
    assert note =~ "polled"
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  test "a session selected again is streamed again from its first event",
       %{page: page, endpoint: ep} do
    first = receive_session()
    second = receive_session()
    # The first session ends with its events kept (readable 10 minutes).
    Browser.eventually(fn ->
      match?({:ok, %{events: [_, _, _ | _]}}, ClusterScope.Trace.events(first, nil, 10))
    end)

    {:ok, _} = ClusterScope.Trace.stop(first)
    {:ok, %{events: kept}} = ClusterScope.Trace.events(first, nil, 1_000)

    rows = "() => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length"

    results =
      Browser.run!(
        page,
        [
          %{op: "goto", url: ep.url <> "/#tab=traces&trace.session=" <> first},
          %{op: "wait", selector: "body[data-ready=true]", state: "attached"}
        ] ++
          token_steps() ++
          [
            %{
              op: "wait",
              selector: "#view-traces[data-events-transport=stream]",
              state: "attached",
              timeout: 20_000
            },
            %{
              op: "wait_fn",
              timeout: 20_000,
              arg: min(length(kept), 500),
              js:
                "(n) => document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= n"
            },
            %{op: "click", selector: ~s([data-session="#{second}"])},
            %{
              op: "wait_fn",
              timeout: 20_000,
              arg: second,
              js:
                "(id) => window.__clusterScopeLive.currentTopics().includes('trace:' + id) && document.querySelector('#view-traces').dataset.eventsTransport === 'stream'"
            },
            %{op: "wait_fn", timeout: 20_000, js: rows <> " >= 3"},
            %{op: "click", selector: ~s([data-session="#{first}"])},
            %{
              op: "wait_fn",
              timeout: 20_000,
              arg: min(length(kept), 500),
              js:
                "(n) => document.querySelector('#view-traces').dataset.eventsTransport === 'stream' && document.querySelectorAll('#trace-events tbody tr[data-kind=receive]').length >= n"
            },
            %{op: "eval", js: "() => window.__clusterScopeLive.currentTopics()"},
            %{op: "eval", js: rows}
          ]
      )

    [topics, shown] = Enum.take(results, -2)
    assert ("trace:" <> first) in topics
    refute ("trace:" <> second) in topics
    # Exactly the session's events, none twice.
    assert shown == min(length(kept), 500)
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end
end
