# Does health still answer while one client abuses the endpoint?
#
#     MIX_ENV=test mix run bench/http_admission.exs
#     QUICK=1 MIX_ENV=test mix run bench/http_admission.exs   # 5 s windows, one round
#
# The abuse, all from 127.0.0.1 (so per-address limits cannot tell the
# attacker from the prober): 100 slow-loris connections that send a header
# line of ~120 bytes a second (above httpd's minimum_bytes_per_second, so
# they hold their connection for minutes), 70 process-window queries
# (window_ms 30,000) and 500 topology GETs fired at once. Meanwhile a
# prober asks GET /api/v1/cluster/health every 50 ms, one at a time, as a
# load balancer would.
#
# Two configurations, interleaved round by round on fresh endpoints:
#   hardened - ClusterScope's defaults (admission lanes, per-client limits,
#              1,024 connections)
#   baseline - main's connection limit before this change (64 connections),
#              per-client limits raised out of reach (lanes stay: there is
#              no switch to turn admission off)
# Every response is classified: 200, JSON 429, or anything else (5xx,
# HTML, a refused or dropped connection), which must not happen.

alias ClusterScope.Web.Endpoint

quick? = System.get_env("QUICK") in ["1", "true"]
window_ms = if quick?, do: 5_000, else: 30_000
rounds = if quick?, do: 1, else: 2
slow_count = 100
window_count = 70
topology_count = 500

defmodule Bench.Raw do
  # One request on a fresh connection; {status, json?} or {:error, reason}.
  def request(port, path, timeout) do
    case :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, packet: :raw], 5_000) do
      {:ok, socket} ->
        req = "GET #{path} HTTP/1.1\r\nHost: 127.0.0.1:#{port}\r\nConnection: close\r\n\r\n"
        :ok = :gen_tcp.send(socket, req)
        result = read_all(socket, "", System.monotonic_time(:millisecond) + timeout)
        :gen_tcp.close(socket)
        parse(result)

      {:error, reason} ->
        {:error, reason}
    end
  end

  defp read_all(socket, acc, deadline) do
    left = deadline - System.monotonic_time(:millisecond)

    if left <= 0 do
      {:error, :timeout}
    else
      case :gen_tcp.recv(socket, 0, left) do
        {:ok, data} -> read_all(socket, acc <> data, deadline)
        {:error, :closed} -> {:ok, acc}
        {:error, reason} -> if acc == "", do: {:error, reason}, else: {:ok, acc}
      end
    end
  end

  defp parse({:ok, "HTTP/1.1 " <> <<code::binary-size(3), _::binary>> = text}) do
    [head | _] = String.split(text, "\r\n\r\n", parts: 2)
    json? = head |> String.downcase() |> String.contains?("content-type: application/json")
    {String.to_integer(code), json?}
  end

  defp parse({:ok, ""}), do: {:error, :closed_without_answer}
  defp parse({:ok, _}), do: {:error, :not_http}
  defp parse(error), do: error

  # A slow-loris connection: a request line, then a header line of ~120
  # bytes every second, never finishing the headers.
  def slow_loris(port, stop_ref) do
    {:ok, socket} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 5_000)
    :gen_tcp.send(socket, "GET /api/v1/cluster/topology HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    drip(socket, stop_ref, 0)
  end

  defp drip(socket, stop_ref, n) do
    receive do
      ^stop_ref -> :gen_tcp.close(socket)
    after
      1_000 ->
        case :gen_tcp.send(socket, "X-Pad-#{n}: #{String.duplicate("a", 110)}\r\n") do
          :ok -> drip(socket, stop_ref, n + 1)
          {:error, _} -> :dropped
        end
    end
  end
end

defmodule Bench.Stats do
  def pct(part, total) when total > 0, do: Float.round(part * 100 / total, 1)
  def pct(_, _), do: 0.0

  def percentile([], _), do: 0

  def percentile(list, p),
    do: Enum.at(Enum.sort(list), min(length(list) - 1, trunc(length(list) * p)))

  def median(list), do: percentile(list, 0.5)
end

run = fn config ->
  opts =
    case config do
      :hardened ->
        [port: 0, token: "bench-token-0123456789abcdef"]

      :baseline ->
        [
          port: 0,
          token: "bench-token-0123456789abcdef",
          max_connections: 64,
          client_rate: 100_000,
          client_burst: 100_000,
          client_concurrency: 100_000
        ]
    end

  {:ok, ep} = Endpoint.start(opts)
  port = ep.port

  stop_ref = make_ref()
  slow = for _ <- 1..slow_count, do: spawn(fn -> Bench.Raw.slow_loris(port, stop_ref) end)
  Process.sleep(300)

  windows =
    for _ <- 1..window_count do
      Task.async(fn ->
        Bench.Raw.request(
          port,
          "/api/v1/cluster/processes?window_ms=#{window_ms}&limit=5",
          window_ms + 30_000
        )
      end)
    end

  Process.sleep(200)

  topology =
    for _ <- 1..topology_count do
      Task.async(fn -> Bench.Raw.request(port, "/api/v1/cluster/topology", 30_000) end)
    end

  # The prober runs for the length of the window queries.
  deadline = System.monotonic_time(:millisecond) + window_ms

  probes =
    Stream.repeatedly(fn ->
      t0 = System.monotonic_time(:microsecond)
      result = Bench.Raw.request(port, "/api/v1/cluster/health", 10_000)
      ms = (System.monotonic_time(:microsecond) - t0) / 1_000
      Process.sleep(50)
      {result, ms}
    end)
    |> Enum.reduce_while([], fn probe, acc ->
      if System.monotonic_time(:millisecond) < deadline,
        do: {:cont, [probe | acc]},
        else: {:halt, [probe | acc]}
    end)

  topo_results = Task.await_many(topology, 60_000)
  window_results = Task.await_many(windows, window_ms + 60_000)
  for pid <- slow, do: send(pid, stop_ref)
  Endpoint.stop(ep)

  all = topo_results ++ window_results ++ Enum.map(probes, &elem(&1, 0))
  ok? = fn r -> match?({200, true}, r) end

  health_ok = Enum.count(probes, fn {r, _} -> ok?.(r) end)
  # Only answered probes have a meaningful latency; unanswered count as 10 s.
  health_ms = Enum.map(probes, fn {r, ms} -> if ok?.(r), do: ms, else: 10_000.0 end)

  %{
    health_ok_pct: Bench.Stats.pct(health_ok, length(probes)),
    health_p99_ms: Float.round(Bench.Stats.percentile(health_ms, 0.99) * 1.0, 1),
    health_p50_ms: Float.round(Bench.Stats.median(health_ms) * 1.0, 1),
    probes: length(probes),
    topology_ok_pct: Bench.Stats.pct(Enum.count(topo_results, ok?), topology_count),
    window_ok: Enum.count(window_results, ok?),
    rejected_429: Enum.count(all, &match?({429, true}, &1)),
    bad: Enum.count(all, fn r -> not match?({200, true}, r) and not match?({429, true}, r) end),
    bad_kinds:
      all
      |> Enum.reject(&(match?({200, true}, &1) or match?({429, true}, &1)))
      |> Enum.frequencies()
  }
end

results =
  for round <- 1..rounds, config <- [:hardened, :baseline] do
    r = run.(config)

    IO.puts(
      "round=#{round} config=#{config} #{inspect(Map.delete(r, :bad_kinds))} bad_kinds=#{inspect(r.bad_kinds)}"
    )

    {config, r}
  end

summary = fn config ->
  rs = for {^config, r} <- results, do: r
  worst = fn key, f -> rs |> Enum.map(& &1[key]) |> f.() end

  %{
    health_ok_pct: worst.(:health_ok_pct, &Enum.min/1),
    health_p99_ms: worst.(:health_p99_ms, &Enum.max/1),
    topology_ok_pct: worst.(:topology_ok_pct, &Enum.min/1),
    rejected_429: worst.(:rejected_429, &Enum.sum/1),
    bad: worst.(:bad, &Enum.sum/1),
    spread_p99_ms:
      "#{worst.(:health_p99_ms, &Enum.min/1)}..#{worst.(:health_p99_ms, &Enum.max/1)}"
  }
end

h = summary.(:hardened)
b = summary.(:baseline)

IO.puts(
  "RESULT bench=http_admission health_ok_pct=#{h.health_ok_pct} health_p99_ms=#{h.health_p99_ms} " <>
    "topology_ok_pct=#{h.topology_ok_pct} rejected_429=#{h.rejected_429} non_json_or_5xx=#{h.bad} " <>
    "health_p99_spread_ms=#{h.spread_p99_ms} rounds=#{rounds} window_ms=#{window_ms}"
)

IO.puts(
  "RESULT bench=http_admission config=baseline_64_connections health_ok_pct=#{b.health_ok_pct} " <>
    "health_p99_ms=#{b.health_p99_ms} topology_ok_pct=#{b.topology_ok_pct} non_json_or_5xx=#{b.bad}"
)
