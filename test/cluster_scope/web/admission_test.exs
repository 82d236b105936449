defmodule ClusterScope.Web.AdmissionTest do
  # Admission control over real sockets: per-client rate and concurrency
  # answered with a JSON 429 and Retry-After, health in a lane of its own,
  # places given back when a handler dies.
  use ExUnit.Case, async: false

  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.{Admission, Endpoint}

  @token "admission-token-0123456789"

  test "past its rate a client gets a JSON 429 with Retry-After; health still answers" do
    {:ok, ep} = Endpoint.start(port: 0, client_rate: 1, client_burst: 3)
    on_exit(fn -> Endpoint.stop(ep) end)

    statuses = for _ <- 1..6, do: elem(HTTP.get(ep.url <> "/api/v1/cluster/topology"), 0)
    assert Enum.take(statuses, 3) == [200, 200, 200]
    assert 429 in statuses

    assert {429, %{"error" => error, "metadata" => _}, headers} =
             HTTP.get(ep.url <> "/api/v1/cluster/topology")

    assert error["code"] == "too_many_requests"
    assert error["details"]["lane"] == "general"
    assert String.to_integer(headers["retry-after"]) >= 1
    assert headers["content-type"] == "application/json"

    # Health has its own lane, without the client's rate.
    for _ <- 1..10, do: assert({200, _, _} = HTTP.get(ep.url <> "/api/v1/cluster/health"))

    # The bucket refills.
    Process.sleep(1_100)
    assert {200, _, _} = HTTP.get(ep.url <> "/api/v1/cluster/topology")
  end

  test "wrong tokens are throttled like requests: no guessing faster than the client's rate" do
    {:ok, ep} = Endpoint.start(port: 0, token: @token, client_rate: 1, client_burst: 3)
    on_exit(fn -> Endpoint.stop(ep) end)
    wrong = [{"authorization", "Bearer wrong-token-0123456789abcd"}]

    statuses =
      for _ <- 1..6, do: elem(HTTP.get(ep.url <> "/api/v1/trace/sessions", headers: wrong), 0)

    assert Enum.take(statuses, 3) == [401, 401, 401]
    assert Enum.drop(statuses, 3) |> Enum.all?(&(&1 == 429))
  end

  test "a client holding its slow places gets 429 for another window; others still run" do
    {:ok, ep} = Endpoint.start(port: 0, token: @token, client_concurrency: 4)
    on_exit(fn -> Endpoint.stop(ep) end)
    window = ep.url <> "/api/v1/cluster/processes?window_ms=3000&limit=1"

    slow = for _ <- 1..2, do: Task.async(fn -> HTTP.get(window) end)
    Process.sleep(500)

    # The slow lane allows two windows per client.
    assert {429, %{"error" => %{"details" => %{"lane" => "slow"}}}, %{"retry-after" => _}} =
             HTTP.get(window)

    # The general lane is not taken by the windows.
    assert {200, _, _} = HTTP.get(ep.url <> "/api/v1/cluster/topology")
    assert {200, _, _} = HTTP.get(ep.url <> "/api/v1/cluster/health")

    # A window written with a leading space is still a window.
    assert {429, %{"error" => %{"details" => %{"lane" => "slow"}}}, _} =
             HTTP.get(ep.url <> "/api/v1/cluster/processes?window_ms=+3000&limit=1")

    assert [{200, _, _}, {200, _, _}] = Task.await_many(slow, 20_000)
    # Places are given back: another window runs.
    assert {200, _, _} = HTTP.get(ep.url <> "/api/v1/cluster/processes?window_ms=100&limit=1")
  end

  test "a place is given back when its holder dies without leaving" do
    limits = %{client_concurrency: 1, client_rate: 1_000, client_burst: 1_000}
    endpoint = "test-#{System.unique_integer([:positive])}"
    parent = self()

    holder =
      spawn(fn ->
        send(parent, {:entered, Admission.enter(endpoint, :general, "10.0.0.1", limits)})
        Process.sleep(:infinity)
      end)

    assert_receive {:entered, :ok}
    assert {:reject, _, 1} = Admission.enter(endpoint, :general, "10.0.0.1", limits)
    # Another client is not affected.
    assert :ok = Admission.enter(endpoint, :general, "10.0.0.2", limits)
    Admission.leave()

    Process.exit(holder, :kill)
    # The monitor frees the place.
    assert Enum.any?(1..50, fn _ ->
             Process.sleep(20)
             Admission.enter(endpoint, :general, "10.0.0.1", limits) == :ok
           end)

    Admission.leave()
  end

  test "a window_ms of another type in a body is a 400, not a crash" do
    {:ok, ep} = Endpoint.start(port: 0)
    on_exit(fn -> Endpoint.stop(ep) end)

    # httpc sends no body with a GET: write the request by hand.
    for body <- [~s({"window_ms": {}}), ~s({"window_ms": [-1]})] do
      {:ok, socket} = :gen_tcp.connect({127, 0, 0, 1}, ep.port, [:binary, active: false])

      :ok =
        :gen_tcp.send(
          socket,
          "GET /api/v1/cluster/processes HTTP/1.1\r\nHost: 127.0.0.1\r\n" <>
            "Content-Type: application/json\r\nContent-Length: #{byte_size(body)}\r\n" <>
            "Connection: close\r\n\r\n" <> body
        )

      answer = read_all(socket, "")
      assert answer =~ ~r/^HTTP\/1.1 400/
      assert answer =~ "invalid_params"
    end
  end

  test "one client cannot fill the health lane" do
    limits = %{client_concurrency: 100, client_rate: 1_000, client_burst: 1_000}
    endpoint = "test-#{System.unique_integer([:positive])}"
    parent = self()

    holders =
      for _ <- 1..4 do
        spawn(fn ->
          send(parent, {:entered, Admission.enter(endpoint, :health, "flooder", limits)})
          Process.sleep(:infinity)
        end)
      end

    for _ <- holders, do: assert_receive({:entered, :ok})
    assert {:reject, _, _} = Admission.enter(endpoint, :health, "flooder", limits)
    assert :ok = Admission.enter(endpoint, :health, "probe", limits)
    Admission.leave()
    Enum.each(holders, &Process.exit(&1, :kill))
  end

  test "a process holding two places gives them back one leave at a time" do
    limits = %{client_concurrency: 2, client_rate: 1_000, client_burst: 1_000}
    endpoint = "test-#{System.unique_integer([:positive])}"

    assert :ok = Admission.enter(endpoint, :general, "c", limits)
    assert :ok = Admission.enter(endpoint, :general, "c", limits)
    assert {:reject, _, _} = Admission.enter(endpoint, :general, "c", limits)
    Admission.leave()
    assert :ok = Admission.enter(endpoint, :general, "c", limits)
    Admission.leave()
    Admission.leave()
    assert Map.get(Admission.usage().lanes, {endpoint, :general}) == nil
  end

  test "the control lane answers while the general lane is full" do
    limits = %{client_concurrency: 1_000, client_rate: 100_000, client_burst: 100_000}
    endpoint = "test-#{System.unique_integer([:positive])}"
    parent = self()
    general = Admission.lanes().general

    holders =
      for i <- 1..general do
        spawn(fn ->
          send(parent, {:entered, Admission.enter(endpoint, :general, "c#{i}", limits)})
          Process.sleep(:infinity)
        end)
      end

    for _ <- holders, do: assert_receive({:entered, :ok})
    assert {:reject, why, _} = Admission.enter(endpoint, :general, "another", limits)
    assert why =~ "general lane"
    assert :ok = Admission.enter(endpoint, :control, "another", limits)
    Admission.leave()
    assert :ok = Admission.enter(endpoint, :health, "another", limits)
    Admission.leave()
    Enum.each(holders, &Process.exit(&1, :kill))
  end

  defp read_all(socket, acc) do
    case :gen_tcp.recv(socket, 0, 10_000) do
      {:ok, data} -> read_all(socket, acc <> data)
      {:error, _} -> :gen_tcp.close(socket) && acc
    end
  end
end
