defmodule ClusterScope.Procs.ControlClusterTest do
  # Protection, redaction at the source and states that render, on real
  # peers: requests are served by `c` about processes of `b` (and of `a`,
  # which started a peer of its own and so runs a `peer` controller).
  use ExUnit.Case, async: false

  alias ClusterScope.LocalCluster
  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.{Cluster, ProcHolder}

  @moduletag :cluster
  @moduletag timeout: 240_000

  setup_all do
    [a, b, c] = Cluster.start(3)
    {o1, o2, o3, _} = Cluster.alias_base()

    # A peer started by `a`: its controller is a process of `a` running
    # the `peer` gen_server (a stray message crashed it once, and every
    # node it started went down with it).
    {:ok, sub} =
      Cluster.call(
        a,
        LocalCluster,
        :start_peer,
        [[agent: false, link: false, connection: :standard_io, ip: {o1, o2, o3, 70}]],
        60_000
      )

    on_exit(fn -> Cluster.cleanup([sub]) end)
    %{a: a, b: b, c: c, sub: sub}
  end

  defp run(peer, op, params), do: Cluster.call(peer, ClusterScope, :run, [op, params], 60_000)
  defp text(pid), do: ProcessRef.to_string(pid)
  defp whereis(peer, name), do: Cluster.call(peer, Process, :whereis, [name])
  defp alive?(peer, pid), do: Cluster.call(peer, Process, :alive?, [pid])

  defp set_dangerous(peer, value) do
    :ok =
      Cluster.call(peer, Application, :put_env, [:cluster_scope, :allow_dangerous_actions, value])

    Cluster.call(peer, ClusterScope.Config, :load, [])
    assert Cluster.call(peer, ClusterScope.Config, :get, [:allow_dangerous_actions]) == value
  end

  # Every way a request can reach a process: kill and send, with and
  # without force. Returns the errors.
  defp attempts(from, pid) do
    for {op, params} <- [
          {"kill_process", %{}},
          {"send_message", %{"message" => "hello"}},
          {"send_message", %{"message" => "hello", "mode" => "cast"}}
        ],
        force <- [false, true] do
      assert {:error, error} =
               run(from, op, Map.merge(params, %{"pid" => text(pid), "force" => force}))

      {op, force, error}
    end
  end

  defp kernel_app_process(peer) do
    # A harmless process of the kernel application: its group leader is
    # kernel's application master.
    [holder] = Cluster.call(peer, ProcHolder, :spawn_many, [1, 1])
    master = Cluster.call(peer, :application_controller, :get_master, [:kernel])
    true = Cluster.call(peer, :erlang, :group_leader, [master, holder])
    holder
  end

  defp runtime_targets(ctx) do
    %{b: b} = ctx
    inets_master = Cluster.call(b, :application_controller, :get_master, [:inets])

    [
      {"init", b, whereis(b, :init)},
      {"auth", b, whereis(b, :auth)},
      {"net_kernel", b, whereis(b, :net_kernel)},
      {"global_name_server", b, whereis(b, :global_name_server)},
      {"code_server", b, whereis(b, :code_server)},
      {"application_controller", b, whereis(b, :application_controller)},
      {"peer controller", ctx.a, ctx.sub.pid},
      {"application master", b, inets_master},
      {"top supervisor", b, whereis(b, :inets_sup)},
      {"kernel process", b, whereis(b, :kernel_refc)},
      {"kernel-app process", b, kernel_app_process(b)},
      {"ClusterScope's own", b, whereis(b, ClusterScope.Cluster.State)},
      {"erts process", b, whereis(b, :erts_code_purger)},
      {"boot-time process", b, whereis(b, :erl_prim_loader)},
      {"max-priority process", b, whereis(b, :global_group)}
    ]
  end

  describe "with dangerous actions off (the default)" do
    test "no runtime process can be killed or messaged, with or without force", ctx do
      assert Cluster.call(ctx.c, ClusterScope.Config, :get, [:allow_dangerous_actions]) == false
      assert ctx.sub.pid |> node() == ctx.a.node

      for {what, owner, pid} <- runtime_targets(ctx) do
        assert is_pid(pid), what

        for {op, force, error} <- attempts(ctx.c, pid) do
          assert error.code == :forbidden, "#{what}: #{op} force=#{force}: #{inspect(error)}"

          if force do
            assert error.message =~ "allow_dangerous_actions",
                   "#{what}: #{op} with force must name the option: #{error.message}"
          end
        end

        assert alive?(owner, pid), "#{what} died"
      end

      # The peer a started still answers through its controller.
      assert LocalCluster.call(ctx.sub, :erlang, :node, []) == ctx.sub.node

      assert Cluster.call(ctx.a, LocalCluster, :call, [ctx.sub, :erlang, :node, []]) ==
               ctx.sub.node
    end

    test "protection is decided on the node from what the process is", ctx do
      inets_master = Cluster.call(ctx.b, :application_controller, :get_master, [:inets])

      reasons =
        for {name, peer, pid} <- [
              {:init, ctx.b, whereis(ctx.b, :init)},
              {:master, ctx.b, inets_master},
              {:top, ctx.b, whereis(ctx.b, :inets_sup)},
              {:peer, ctx.a, ctx.sub.pid},
              {:kernel, ctx.b, whereis(ctx.b, :kernel_refc)}
            ],
            into: %{} do
          {name, Cluster.call(peer, ClusterScope.Agent.Processes.Rows, :protection_v1, [pid])}
        end

      assert %{level: :vital} = reasons.init

      assert %{level: :system, reason: "it is the application master of the inets" <> _} =
               reasons.master

      assert %{level: :system, reason: "it is the top supervisor of the inets" <> _} = reasons.top
      assert %{level: :system, reason: "it runs peer:init/1" <> _} = reasons.peer

      assert %{level: :system, reason: "it belongs to the kernel application" <> _} =
               reasons.kernel

      {:ok, echo} = Cluster.call(ctx.b, TestApp.Echo, :start, [])

      assert %{level: :none} =
               Cluster.call(ctx.b, ClusterScope.Agent.Processes.Rows, :protection_v1, [echo])

      # Starting in an OTP function does not make a process the runtime's.
      {:ok, agent} = Cluster.call(ctx.b, Agent, :start, [:lists, :seq, [1, 3]])
      sleeper = Cluster.call(ctx.b, :erlang, :spawn, [:timer, :sleep, [60_000]])

      for pid <- [agent, sleeper] do
        assert %{level: :none} =
                 Cluster.call(ctx.b, ClusterScope.Agent.Processes.Rows, :protection_v1, [pid])
      end

      {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(echo)})
      assert info.protected == nil and info.protection == :none
    end

    test "an ordinary process can still be messaged and killed, without force", ctx do
      {:ok, echo} = Cluster.call(ctx.b, TestApp.Echo, :start, [])
      {:ok, sent} = run(ctx.c, "send_message", %{"pid" => text(echo), "message" => [1]})
      assert sent.delivered and sent.forced == false
      {:error, forced} = run(ctx.c, "kill_process", %{"pid" => text(echo), "force" => true})
      assert forced.code == :forbidden and forced.message =~ "allow_dangerous_actions"
      assert alive?(ctx.b, echo)
      {:ok, killed} = run(ctx.c, "kill_process", %{"pid" => text(echo)})
      assert killed.exited and killed.forced == false
      refute alive?(ctx.b, echo)
    end
  end

  describe "a process spawned from another node" do
    # Its parent lives on the spawning node: the protection check once read
    # that parent with process_info/2, which raises badarg for a remote pid,
    # and info and kill answered an internal error.
    test "can be read and killed", ctx do
      pid = Cluster.call(ctx.c, Node, :spawn, [ctx.b.node, :timer, :sleep, [:infinity]])
      assert node(pid) == ctx.b.node
      {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(pid)})
      assert info.protection == :none
      {:ok, killed} = run(ctx.a, "kill_process", %{"pid" => text(pid)})
      assert killed.exited
      refute alive?(ctx.b, pid)
    end
  end

  describe "with dangerous actions on" do
    setup ctx do
      set_dangerous(ctx.c, true)
      on_exit(fn -> set_dangerous(ctx.c, false) end)
      :ok
    end

    test "force reaches a kernel-app process, never the vital servers", ctx do
      holder = kernel_app_process(ctx.b)
      {:error, unforced} = run(ctx.c, "kill_process", %{"pid" => text(holder)})
      assert unforced.code == :forbidden
      assert alive?(ctx.b, holder)

      {:ok, killed} = run(ctx.c, "kill_process", %{"pid" => text(holder), "force" => true})
      assert killed.exited and killed.forced
      refute alive?(ctx.b, holder)

      for name <- [
            :init,
            :auth,
            :net_kernel,
            :global_name_server,
            :code_server,
            :application_controller,
            # Beyond the named ones: what init started, what runs under it.
            :erts_code_purger,
            :erl_prim_loader
          ] do
        pid = whereis(ctx.b, name)

        for {op, force, error} <- attempts(ctx.c, pid) do
          assert error.code == :forbidden, "#{name}: #{op} force=#{force}"
          if force, do: assert(error.message =~ "with or without force", error.message)
        end

        assert alive?(ctx.b, pid)
      end

      [plain] = Cluster.call(ctx.b, ProcHolder, :spawn_many, [1, 1])
      {:ok, killed} = run(ctx.c, "kill_process", %{"pid" => text(plain), "force" => true})
      assert killed.exited and killed.forced == false
    end
  end

  describe "redaction at the source" do
    test "a state holding the node's own cookies and a password leaves the node redacted", ctx do
      ghost = :"ghost_#{System.unique_integer([:positive])}@127.0.0.99"
      ghost_cookie = :"ghostcookie_#{System.unique_integer([:positive])}_b_only"
      true = Cluster.call(ctx.b, :erlang, :set_cookie, [ghost, ghost_cookie])
      own = Cluster.call(ctx.b, :erlang, :get_cookie, [])
      # Only b knows the ghost cookie: c cannot redact it for b.
      assert Cluster.call(ctx.c, :erlang, :get_cookie, [ghost]) != ghost_cookie
      password = "hunter2-#{System.unique_integer([:positive])}"
      ghost_text = Atom.to_string(ghost_cookie)

      state = [
        password: password,
        cookie: own,
        other: ghost_cookie,
        args: ~c"-setcookie " ++ Atom.to_charlist(ghost_cookie),
        line: "erl -setcookie #{ghost_text} -name x"
      ]

      {:ok, small} = Cluster.call(ctx.b, Agent, :start, [Map, :new, [state]])
      # Over 1 MiB: printed on b from a redacted preview.
      {:ok, large} =
        Cluster.call(ctx.b, Agent, :start, [:lists, :duplicate, [100_000, {:cfg, state}]])

      for pid <- [small, large] do
        {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(pid)})
        whole = inspect(info, limit: :infinity, printable_limit: :infinity)
        assert info.state_text =~ "[REDACTED]"
        refute whole =~ ghost_text
        refute whole =~ Atom.to_string(own)
        refute whole =~ password
      end

      {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(large)})
      assert info.state_error =~ "too large"
      assert info.state_text =~ "-setcookie [REDACTED]"

      # The node side alone, as an older caller would see it: info_v2 with
      # no keys and no secrets still redacts b's cookies.
      v2 =
        Cluster.call(ctx.b, ClusterScope.Agent.Processes.Rows, :info_v2, [small, 1_000, [], []])

      refute inspect(v2, limit: :infinity) =~ ghost_text
      v1 = Cluster.call(ctx.b, ClusterScope.Agent.Processes.Rows, :info_v1, [small, 1_000])
      assert inspect(v1, limit: :infinity) =~ ghost_text
    end

    test "a call's reply leaves the process's node redacted", ctx do
      ghost = :"ghost_#{System.unique_integer([:positive])}@127.0.0.98"
      ghost_cookie = :"replycookie_#{System.unique_integer([:positive])}_b_only"
      true = Cluster.call(ctx.b, :erlang, :set_cookie, [ghost, ghost_cookie])
      password = "swordfish-#{System.unique_integer([:positive])}"
      state = [password: password, other: ghost_cookie, line: "-setcookie #{ghost_cookie}"]
      {:ok, agent} = Cluster.call(ctx.b, Agent, :start, [Map, :new, [state]])

      # Agent's {:get, {m, f, a}}: the reply is Map.merge(state, %{}).
      get = %{
        "$tuple" => [
          %{"$atom" => "get"},
          %{"$tuple" => [%{"$atom" => "Elixir.Map"}, %{"$atom" => "merge"}, [%{}]]}
        ]
      }

      {:ok, reply} =
        run(ctx.c, "send_message", %{"pid" => text(agent), "mode" => "call", "message" => get})

      whole = inspect(reply, limit: :infinity, printable_limit: :infinity)
      assert reply.reply_text =~ "[REDACTED]"
      refute whole =~ Atom.to_string(ghost_cookie)
      refute whole =~ password

      # A reply over 1 MiB is printed on b from a redacted preview.
      {:ok, large} =
        Cluster.call(ctx.b, Agent, :start, [:lists, :duplicate, [100_000, {:cfg, state}]])

      reverse = %{
        "$tuple" => [
          %{"$atom" => "get"},
          %{"$tuple" => [%{"$atom" => "lists"}, %{"$atom" => "reverse"}, []]}
        ]
      }

      {:ok, reply} =
        run(ctx.c, "send_message", %{"pid" => text(large), "mode" => "call", "message" => reverse})

      assert reply.reply_error =~ "too large"
      assert reply.reply_text =~ "-setcookie [REDACTED]"
      whole = inspect(reply, limit: :infinity, printable_limit: :infinity)
      refute whole =~ Atom.to_string(ghost_cookie)
      refute whole =~ password
    end

    test "the peer controller's state (its command line) leaves its node redacted", ctx do
      {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(ctx.sub.pid)})
      refute inspect(info, limit: :infinity) =~ Atom.to_string(Node.get_cookie())
      assert info.state_text =~ "[REDACTED]"
    end
  end

  describe "states that render" do
    test "a DynamicSupervisor's state and ClusterScope.Cluster.State's, on every node", ctx do
      # Not linked to the short-lived process that serves the call.
      arg = {Supervisor.Default, DynamicSupervisor.init(strategy: :one_for_one), nil}
      {:ok, sup} = Cluster.call(ctx.b, GenServer, :start, [DynamicSupervisor, arg])
      {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(sup)})
      assert info.type == :supervisor
      assert info.state_text =~ "DynamicSupervisor"
      assert {:ok, _} = ClusterScope.JSON.encode(info.state)

      for peer <- [ctx.a, ctx.b, ctx.c] do
        state = whereis(peer, ClusterScope.Cluster.State)
        {:ok, info} = run(ctx.c, "get_process_info", %{"pid" => text(state)})
        assert info.state, "no state for #{peer.node}: #{inspect(info[:state_error])}"
        assert {:ok, _} = ClusterScope.JSON.encode(info.state)
      end
    end
  end
end
