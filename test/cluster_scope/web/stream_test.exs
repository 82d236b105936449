defmodule ClusterScope.Web.StreamTest do
  # GET /api/v1/stream over real sockets: frames, latency bound, resume
  # after an endpoint restart, authority per topic, connection limit,
  # max duration, heartbeats.
  use ExUnit.Case, async: false

  alias ClusterScope.{Health, Mode}
  alias ClusterScope.Test.{ModeSwitch, SSE}
  alias ClusterScope.Web.{Endpoint, Stream, StreamHub}

  @token "stream-token-0123456789abcdef"

  defp start_endpoint(opts \\ []) do
    {:ok, endpoint} =
      Endpoint.start([port: 0, token: @token, client_rate: 10_000, client_burst: 10_000] ++ opts)

    on_exit(fn -> Endpoint.stop(endpoint) end)
    endpoint
  end

  defp auth, do: [{"authorization", "Bearer " <> @token}]

  defp open!(endpoint, path, headers \\ []) do
    {:ok, conn} = SSE.open(endpoint.port, path, headers)
    on_exit(fn -> SSE.close(conn) end)
    conn
  end

  # The first frame: retry and the connected comment.
  defp connected!(conn) do
    {:ok, frame, conn} = SSE.next(conn, 5_000)
    assert frame.retry == "1000"
    assert "connected" in frame.comments
    conn
  end

  defp switch_mode(mode) do
    {:ok, _} = Mode.set(mode)
  end

  test "a cluster event reaches an open stream within a second" do
    ModeSwitch.allow()
    endpoint = start_endpoint()
    conn = open!(endpoint, "/api/v1/stream?topics=cluster")
    assert conn.status == 200
    assert conn.headers["content-type"] == "text/event-stream"
    assert conn.headers["transfer-encoding"] == "chunked"
    conn = connected!(conn)

    t0 = System.monotonic_time(:millisecond)
    switch_mode(:simulated)

    {:ok, frame, _conn, _} =
      SSE.await(conn, &(&1[:event] == "cluster" and SSE.data(&1)["type"] == "mode"), 3_000)

    elapsed = System.monotonic_time(:millisecond) - t0
    assert elapsed < 1_000, "the event took #{elapsed} ms"

    # The data is the item of GET /api/v1/cluster/events.
    event = SSE.data(frame)
    assert [polled] = ClusterScope.Cluster.State.events(event["id"] - 1, 1)
    assert polled.id == event["id"]
    assert event["type"] == "mode"
    assert Map.keys(event) |> Enum.sort() == ~w(at_ms cause details id node type)
    assert is_binary(frame.id) and frame.id != ""
  end

  test "a stream resumed with Last-Event-ID after an endpoint restart replays what it missed" do
    ModeSwitch.allow()
    endpoint = start_endpoint()
    conn = open!(endpoint, "/api/v1/stream?topics=cluster,alerts")
    conn = connected!(conn)

    switch_mode(:simulated)

    {:ok, first, conn, _} =
      SSE.await(conn, &(&1[:event] == "cluster" and SSE.data(&1)["type"] == "mode"), 3_000)

    # The endpoint goes away; while it is gone the cluster changes and an
    # alert is raised.
    Endpoint.stop(endpoint)
    assert {:closed, _, _} = SSE.await(conn, fn _ -> false end, 5_000)

    switch_mode(:multi_node)
    Health.reset_alert_thresholds()
    on_exit(fn -> Health.reset_alert_thresholds() end)
    count = length(Process.list())
    {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: div(count, 2)}})
    Health.sample_now()

    missed_ids = for e <- ClusterScope.Cluster.State.events(SSE.data(first)["id"], 100), do: e.id

    assert missed_ids != []

    # A new endpoint (a new port: the old one is gone); the client resumes.
    endpoint2 = start_endpoint()

    conn2 =
      open!(endpoint2, "/api/v1/stream?topics=cluster,alerts", [{"last-event-id", first.id}])

    conn2 = connected!(conn2)

    {:ok, _, conn2, seen} =
      SSE.await(
        conn2,
        &(&1[:event] == "alert" and SSE.data(&1)["metric"] == "process_count"),
        5_000
      )

    seen_ids = for f <- seen, f[:event] == "cluster", do: SSE.data(f)["id"]
    # Every event after the cursor, in order, none twice, none before it.
    assert Enum.take(seen_ids, length(missed_ids)) == missed_ids
    assert seen_ids == Enum.uniq(seen_ids)

    # And then it is live: the alert clears when the threshold goes away.
    {:ok, _} = Health.set_alert_thresholds(%{process_count: %{warning: nil}})
    Health.sample_now()

    {:ok, cleared, _, _} =
      SSE.await(conn2, &(&1[:event] == "alert" and SSE.data(&1)["cleared_at_ms"] != nil), 5_000)

    assert SSE.data(cleared)["metric"] == "process_count"
  end

  test "the query parameter last_event_id resumes too, and a bad cursor is refused by name" do
    ModeSwitch.allow()
    endpoint = start_endpoint()
    conn = connected!(open!(endpoint, "/api/v1/stream?topics=cluster"))
    switch_mode(:simulated)

    {:ok, first, conn, _} = SSE.await(conn, &(&1[:event] == "cluster"), 3_000)
    SSE.close(conn)
    switch_mode(:multi_node)

    conn =
      connected!(
        open!(
          endpoint,
          "/api/v1/stream?topics=cluster&last_event_id=" <> URI.encode_www_form(first.id)
        )
      )

    {:ok, frame, _, _} = SSE.await(conn, &(&1[:event] == "cluster"), 3_000)
    assert SSE.data(frame)["id"] > SSE.data(first)["id"]

    bad = open!(endpoint, "/api/v1/stream?topics=cluster", [{"last-event-id", "not a cursor"}])
    assert bad.status == 400
    assert SSE.json_body(bad)["error"]["message"] =~ "last_event_id"
  end

  test "trace topics need the admin token; cluster and alerts do not" do
    endpoint = start_endpoint()

    {:ok, session} =
      ClusterScope.Trace.start(%{
        module: "TestApp.Work",
        function: "step",
        arity: "1",
        rate: 1_000,
        max_events: 10_000,
        duration_ms: 60_000,
        nodes: [node()]
      })

    on_exit(fn -> ClusterScope.Trace.stop(session.id) end)

    refused = open!(endpoint, "/api/v1/stream?topics=cluster,trace:#{session.id}")
    assert refused.status == 401
    assert SSE.json_body(refused)["error"]["code"] == "unauthorized"

    wrong =
      open!(endpoint, "/api/v1/stream?topics=trace:#{session.id}", [
        {"authorization", "Bearer wrong-token-0123456789"}
      ])

    assert wrong.status == 401

    open = connected!(open!(endpoint, "/api/v1/stream?topics=cluster,alerts"))
    assert open.status == 200

    conn = connected!(open!(endpoint, "/api/v1/stream?topics=trace:#{session.id}", auth()))
    t0 = System.monotonic_time(:millisecond)
    TestApp.Work.drive(5)

    {:ok, frame, _, _} = SSE.await(conn, &(&1[:event] == "trace"), 3_000)
    elapsed = System.monotonic_time(:millisecond) - t0
    assert elapsed < 1_000, "the trace event took #{elapsed} ms"
    event = SSE.data(frame)
    assert event["session"] == session.id
    assert event["node"] == Atom.to_string(node())

    unknown = open!(endpoint, "/api/v1/stream?topics=trace:nosuchsession", auth())
    assert unknown.status == 404
  end

  test "a bad topic is refused naming the field" do
    endpoint = start_endpoint()
    conn = open!(endpoint, "/api/v1/stream?topics=cluster,weather")
    assert conn.status == 400
    body = SSE.json_body(conn)
    assert body["error"]["message"] =~ "topics"
    assert body["error"]["message"] =~ "weather"
  end

  test "one client holds at most stream_per_client streams; a closed one frees its place" do
    endpoint = start_endpoint(stream_per_client: 2)
    a = connected!(open!(endpoint, "/api/v1/stream?topics=cluster"))
    _b = connected!(open!(endpoint, "/api/v1/stream?topics=cluster"))

    c = open!(endpoint, "/api/v1/stream?topics=cluster")
    assert c.status == 429
    assert c.headers["retry-after"]
    assert SSE.json_body(c)["error"]["details"]["lane"] == "stream"

    SSE.close(a)

    # The server notices the closed socket and gives the place back.
    assert eventually(fn ->
             conn = open!(endpoint, "/api/v1/stream?topics=cluster")
             ok = conn.status == 200
             SSE.close(conn)
             ok
           end)
  end

  test "the server ends a stream after max_stream_s and sends heartbeats meanwhile" do
    endpoint = start_endpoint(max_stream_s: 2, stream_heartbeat_ms: 300)
    conn = connected!(open!(endpoint, "/api/v1/stream?topics=cluster"))
    t0 = System.monotonic_time(:millisecond)

    {:ok, beat, conn} = SSE.next(conn, 3_000)
    assert beat.event == "heartbeat"
    assert is_integer(SSE.data(beat)["at_ms"])
    # A heartbeat carries the cursor too: resuming from it loses nothing.
    assert {:ok, _} = Stream.decode_cursor(beat.id)

    {:closed, _, frames} = SSE.await(conn, fn _ -> false end, 6_000)
    elapsed = System.monotonic_time(:millisecond) - t0
    assert elapsed in 1_500..5_000
    assert Enum.all?(frames, &(&1[:event] == "heartbeat"))
  end

  test "a client that stops reading is dropped and its place freed" do
    endpoint = start_endpoint(stream_per_client: 1)

    {:ok, session} =
      ClusterScope.Trace.start(%{
        module: "TestApp.Work",
        function: "step",
        arity: "1",
        rate: 20_000,
        max_events: 10_000_000,
        max_queue: 1_000_000,
        duration_ms: 120_000,
        nodes: [node()]
      })

    on_exit(fn -> ClusterScope.Trace.stop(session.id) end)

    # A tiny receive window, and the client never reads past the head.
    {:ok, stuck} =
      SSE.open(endpoint.port, "/api/v1/stream?topics=trace:#{session.id}", auth(),
        recbuf: 1_024,
        buffer: 1_024
      )

    on_exit(fn -> SSE.close(stuck) end)
    assert stuck.status == 200
    driver = Task.async(fn -> drive_until_free(endpoint, 60_000) end)
    assert {:freed, ms} = Task.await(driver, 70_000)
    # The server's writes blocked, timed out (5 s) and the stream ended.
    assert ms < 60_000
    assert Process.alive?(Process.whereis(StreamHub))
  end

  defp drive_until_free(endpoint, left) when left > 0 do
    t0 = System.monotonic_time(:millisecond)
    TestApp.Work.drive_for(300)
    {:ok, conn} = SSE.open(endpoint.port, "/api/v1/stream?topics=cluster")
    status = conn.status
    SSE.close(conn)

    if status == 200,
      do: {:freed, 60_000 - left},
      else: drive_until_free(endpoint, left - (System.monotonic_time(:millisecond) - t0))
  end

  defp drive_until_free(_endpoint, _left), do: :still_held

  test "a cursor past the end of the history (a node restart) replays the history" do
    ModeSwitch.allow()
    switch_mode(:simulated)
    switch_mode(:multi_node)
    endpoint = start_endpoint()
    [first | _] = ClusterScope.Cluster.State.events(0, 1)
    stale = Stream.encode_cursor(%{cluster: 10_000_000})

    conn =
      connected!(open!(endpoint, "/api/v1/stream?topics=cluster", [{"last-event-id", stale}]))

    {:ok, frame, _, _} = SSE.await(conn, &(&1[:event] == "cluster"), 3_000)
    assert SSE.data(frame)["id"] == first.id
  end

  @tag :cluster
  @tag timeout: 120_000
  test "an alert raised on another node reaches the stream within a second" do
    # This node's heartbeat started before test_helper.exs made the node
    # distributed, and still names itself nonode@nohost in its beats: the
    # peer would never hear this node, and this node, on the minority side
    # of that "split", would skip the peer. A restart gives it its name.
    heartbeat = ClusterScope.Cluster.Heartbeat
    :ok = Supervisor.terminate_child(ClusterScope.Supervisor, heartbeat)
    {:ok, _} = Supervisor.restart_child(ClusterScope.Supervisor, heartbeat)
    ClusterScope.Test.Cluster.forget_gone()
    ClusterScope.Cluster.State.forget(:nonode@nohost)
    [peer] = ClusterScope.Test.Cluster.start(1, observer: :visible)
    alias ClusterScope.LocalCluster

    assert poll(fn -> peer.node in ClusterScope.Cluster.Heartbeat.agent_nodes() end)
    # Health reads the nodes this node sees as up: wait for that view.
    assert poll(fn -> ClusterScope.Fanout.node_statuses()[peer.node] == :up end, 30_000),
           inspect(ClusterScope.Fanout.node_statuses())

    endpoint = start_endpoint()
    conn = connected!(open!(endpoint, "/api/v1/stream?topics=alerts"))
    # The hub reads the other nodes while a stream follows alerts.
    Process.sleep(600)

    {:ok, _} =
      LocalCluster.call(peer, Health, :set_alert_thresholds, [%{process_count: %{warning: 10}}])

    _ = LocalCluster.call(peer, Health, :sample_now, [])
    t0 = System.monotonic_time(:millisecond)
    name = Atom.to_string(peer.node)

    {:ok, frame, _, _} =
      SSE.await(conn, &(&1[:event] == "alert" and SSE.data(&1)["node"] == name), 5_000)

    elapsed = System.monotonic_time(:millisecond) - t0
    assert elapsed < 1_000, "the remote alert took #{elapsed} ms"
    assert SSE.data(frame)["metric"] == "process_count"
  end

  defp poll(fun, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    cond do
      fun.() -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> Process.sleep(100) && poll(fun, deadline - System.monotonic_time(:millisecond))
    end
  end

  test "the OpenAPI document lists the stream" do
    doc = ClusterScope.Web.OpenAPI.document()
    get = doc["paths"]["/api/v1/stream"]["get"]
    assert Enum.map(get["parameters"], & &1["name"]) == ["topics", "last_event_id"]
    assert Map.has_key?(get["responses"]["200"]["content"], "text/event-stream")
  end

  test "cursors round-trip and nonsense is refused" do
    positions = %{cluster: 42, alerts: {"abc", 7}, traces: %{"s1" => "xyz"}}
    assert {:ok, ^positions} = Stream.decode_cursor(Stream.encode_cursor(positions))
    assert {:error, %{code: :invalid_params}} = Stream.decode_cursor("%%%")

    assert {:error, %{code: :invalid_params}} =
             Stream.decode_cursor(Base.url_encode64(~s({"c":-1}), padding: false))

    assert {:error, %{code: :invalid_params}} =
             Stream.decode_cursor(String.duplicate("a", 20_000))
  end

  defp eventually(fun, tries \\ 50) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(100) && eventually(fun, tries - 1)
    end
  end
end
