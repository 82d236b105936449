defmodule ClusterScope.Web.DemoTest do
  # `make demo`'s cluster function on real peers: the workload exists, the
  # URL and token are printed, and the demo operations cut, freeze and heal
  # a peer over HTTP, in demo mode only.
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.{Demo, Endpoint}
  alias ClusterScope.Web.Demo.Workload
  alias Mix.Tasks.ClusterScope.Demo, as: DemoTask

  @token "demo-test-token-0123456789"

  describe "outside demo mode" do
    test "the demo operations are refused with a clear error" do
      refute Demo.active?()
      {:ok, endpoint} = Endpoint.start(port: 0, token: @token)
      on_exit(fn -> Endpoint.stop(endpoint) end)

      for op <- ~w(cut freeze heal) do
        {status, body, _} =
          HTTP.post(endpoint.url <> "/api/v1/demo/nodes/somebody@127.0.0.1/#{op}", "{}",
            headers: [{"authorization", "Bearer " <> @token}]
          )

        assert status == 403
        assert body["error"]["code"] == "forbidden"
        assert body["error"]["message"] =~ "demo mode"
        assert Enum.any?(body["error"]["remediation"], &(&1 =~ "make demo"))
      end

      {200, body, _} = HTTP.get(endpoint.url <> "/api/v1/demo")
      assert body["data"]["active"] == false

      # Control scope: without the token, 401 before anything else.
      {status, _, _} = HTTP.post(endpoint.url <> "/api/v1/demo/nodes/x/cut", "{}")
      assert status == 401
    end

    test "the demo operations are listed as control operations" do
      for name <- ~w(demo_cut_node demo_freeze_node demo_heal_node) do
        assert {:ok, meta} = ClusterScope.Operation.Registry.lookup(name)
        assert meta.scope == :control
        assert meta.mutating
      end
    end
  end

  describe "the demo cluster" do
    @describetag :cluster
    @describetag timeout: 180_000

    setup do
      previous = Application.fetch_env(:cluster_scope, :allow_mode_switch)
      {:ok, demo} = DemoTask.start_demo(nodes: 2, port: 0)

      on_exit(fn ->
        DemoTask.stop_demo(demo)

        case previous do
          {:ok, v} -> Application.put_env(:cluster_scope, :allow_mode_switch, v)
          :error -> Application.delete_env(:cluster_scope, :allow_mode_switch)
        end

        ClusterScope.Config.load()
      end)

      %{demo: demo}
    end

    test "prints the URL and token, and the workload runs on every node", %{demo: demo} do
      ready = List.last(demo.lines)
      assert ready == "ClusterScope demo ready: #{demo.url} token=#{demo.token}"
      assert Demo.active?()

      peers = for p <- demo.demo.peers, do: Demo.peer(p.node)
      assert length(peers) == 2

      local = Workload.describe()
      assert length(local.busy) == 4
      # A Horde registry when Horde loads (ERL_LIBS), none otherwise.
      assert is_pid(local.horde) == Code.ensure_loaded?(Horde.Registry)
      first = local.mailbox_len

      for peer <- peers do
        remote = LocalCluster.call(peer, Workload, :describe, [])
        assert length(remote.busy) == 4
        assert is_pid(remote.mailbox)
      end

      # The mailbox grows.
      Process.sleep(1_000)
      assert Workload.describe().mailbox_len > first

      # The sandbox spans the nodes.
      assert %{id: id} = demo.demo.sandbox
      assert {:ok, info} = ClusterScope.Sandbox.info(id)
      assert info != nil

      # The API answers with the printed token.
      {status, _, _} =
        HTTP.get(demo.url <> "/api/v1/trace/sessions",
          headers: [{"authorization", "Bearer " <> demo.token}]
        )

      assert status == 200
    end

    test "cut, freeze and heal a peer over HTTP", %{demo: demo} do
      [target | _] = demo.demo.peers
      name = Atom.to_string(target.node)
      auth = [headers: [{"authorization", "Bearer " <> demo.token}]]
      post = fn op -> HTTP.post(demo.url <> "/api/v1/demo/nodes/#{name}/#{op}", "{}", auth) end

      {status, body, _} =
        HTTP.post(demo.url <> "/api/v1/demo/nodes/nobody@nowhere/cut", "{}", auth)

      assert status == 404
      assert body["error"]["message"] =~ "not a peer of the demo"

      {200, status, _} = HTTP.get(demo.url <> "/api/v1/demo")
      assert status["data"]["active"] == true
      assert name in Enum.map(status["data"]["peers"], & &1["node"])

      # Cut: the link drops and a new connection is refused.
      mark = last_event_id()
      {200, body, _} = post.("cut")
      assert body["data"]["fault"] == "cut"
      {200, status, _} = HTTP.get(demo.url <> "/api/v1/demo")
      assert Enum.find(status["data"]["peers"], &(&1["node"] == name))["fault"] == "cut"
      assert poll(fn -> target.node not in Node.list() end)
      refute :net_kernel.connect_node(target.node)
      assert target.node not in Node.list()
      # Detection sees it.
      assert poll(fn -> event?(mark, target.node, [:down, :partition, :suspect]) end)
      mark = last_event_id()

      # Heal: it comes back.
      {200, body, _} = post.("heal")
      assert body["data"]["fault"] == "none"
      assert poll(fn -> target.node in Node.list() end, 15_000)
      assert poll(fn -> event?(mark, target.node, [:up, :heal]) end, 15_000)

      # Freeze: the OS process stops; the peer does not answer.
      {200, body, _} = post.("freeze")
      assert body["data"]["fault"] == "frozen"
      assert {:timeout, _} = ping(target.node, 1_000)

      {200, _, _} = post.("heal")
      assert {:ok, :pong} = ping(target.node, 5_000)
    end
  end

  defp last_event_id do
    case ClusterScope.Cluster.State.events(0, 1_000) do
      [] -> 0
      events -> List.last(events).id
    end
  end

  defp event?(since, node, types) do
    Enum.any?(ClusterScope.Cluster.State.events(since, 1_000), fn e ->
      e.type in types and (e.node == node or node in List.wrap(e.details[:nodes]))
    end)
  end

  defp ping(node, timeout) do
    task = Task.async(fn -> :net_adm.ping(node) end)

    case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
      {:ok, answer} -> {:ok, answer}
      nil -> {:timeout, node}
    end
  end

  defp poll(fun, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      cond do
        fun.() -> true
        System.monotonic_time(:millisecond) > deadline -> false
        true -> Process.sleep(100) && nil
      end
    end)
    |> Enum.find(&(&1 != nil))
  end
end
