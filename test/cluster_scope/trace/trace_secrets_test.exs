defmodule ClusterScope.Trace.SecretsTest do
  # Tracing never shows a secret: modules that handle the cookie, keys and
  # tokens are never traced (not even forced), and every event is redacted
  # on the traced node with that node's secrets.
  use ExUnit.Case, async: false

  alias ClusterScope.ProcessRef
  alias ClusterScope.Test.Cluster

  @moduletag :cluster
  @moduletag timeout: 120_000

  @token "b-only-token-6f2a9c1d8e"

  setup_all do
    [a, b] = Cluster.start(2)
    # A token only b knows: only b's own rules can redact it.
    :ok = Cluster.call(b, ClusterScope.Secrets, :add_tokens, [[@token]])
    %{a: a, b: b}
  end

  defp start(peer, params),
    do: Cluster.call(peer, ClusterScope, :run, ["trace_process", params], 30_000)

  # Read as the session's node has them (not through the runner, which
  # redacts again on the caller).
  defp events(peer, id),
    do: Cluster.call(peer, ClusterScope.Trace, :events, [id, nil, 1000], 30_000)

  defp await(fun, timeout \\ 5_000),
    do: Cluster.poll(System.monotonic_time(:millisecond) + timeout, fun)

  test "auth, crypto, distribution internals and ClusterScope are never traced, forced or not",
       ctx do
    modules =
      ~w(auth crypto erl_distribution dist_util net_kernel inet_tcp_dist) ++
        ["ClusterScope.Secrets", "ClusterScope.Trace.Tracer"]

    for module <- modules, force <- [false, true] do
      params = %{"module" => module, "function" => "_", "force" => force}
      assert {:error, e} = start(ctx.a, params), "#{module} force=#{force} was traced"
      assert e.code == :invalid_params
      assert inspect(e.details) =~ "never traced", "#{module}: #{inspect(e.details)}"
    end

    # crypto:hash_equals/2 by name and arity, the call that leaked the token.
    assert {:error, %{code: :invalid_params}} =
             start(ctx.a, %{
               "module" => "crypto",
               "function" => "hash_equals",
               "arity" => "2",
               "force" => true
             })

    # The messages of the processes that hold the cookie.
    for name <- ~w(auth net_kernel), force <- [false, true] do
      assert {:error, %{code: :invalid_params} = e} =
               start(ctx.a, %{"name" => name, "messages" => "receive", "force" => force})

      assert inspect(e.details) =~ "never traced"
    end

    # The same processes, and ClusterScope's, named by pid: checked on b.
    for name <- [:auth, :net_kernel, ClusterScope.Cluster.State], force <- [false, true] do
      pid = Cluster.call(ctx.b, Process, :whereis, [name])

      assert {:error, %{code: :invalid_params} = e} =
               start(ctx.a, %{
                 "process" => ProcessRef.to_string(pid),
                 "messages" => "both",
                 "force" => force
               })

      assert e.message =~ "never traced", "#{name}: #{e.message}"
    end
  end

  test "the cookie and the node's tokens never appear in events, only [REDACTED]", ctx do
    cookie = ctx.b |> Cluster.call(Node, :get_cookie, []) |> Atom.to_string()
    padding = String.duplicate("x", 10_000)

    {:ok, s} =
      start(ctx.a, %{
        "module" => "TestApp.Login",
        "function" => "_",
        "return" => true,
        "nodes" => [Atom.to_string(ctx.b.node)]
      })

    # Small calls (stored raw, formatted when read) and one over 8 KiB
    # (formatted when stored), with the secrets as text, atom, charlist,
    # inside a longer text and under a secret key.
    Cluster.call(ctx.b, TestApp.Login, :check, [cookie, @token])
    Cluster.call(ctx.b, TestApp.Login, :check, [String.to_atom(cookie), "Bearer " <> @token])
    Cluster.call(ctx.b, TestApp.Login, :check, [String.to_charlist(cookie), [1, 2]])
    Cluster.call(ctx.b, TestApp.Login, :check, [padding <> @token, padding <> cookie])
    Cluster.call(ctx.b, TestApp.Login, :login, [[user: "ada", password: "hunter2-plain"]])

    page =
      await(fn ->
        {:ok, page} = events(ctx.a, s.id)
        if length(page.events) >= 10, do: page
      end) || flunk("events never arrived: #{inspect(events(ctx.a, s.id))}")

    text = inspect(page.events, limit: :infinity, printable_limit: :infinity)
    charlist_text = cookie |> String.to_charlist() |> Enum.take(6) |> inspect()

    refute text =~ cookie
    refute text =~ @token
    refute text =~ "hunter2-plain"
    refute text =~ String.trim(charlist_text, "]")
    assert text =~ "[REDACTED]"
    assert Enum.any?(page.events, &(&1.kind == "return" and &1.result =~ "[REDACTED]"))
    # check(cookie, token), check(:cookie, "Bearer token"), login(password: _);
    # the charlist prints as integers, the 10 KB texts past the print limit.
    assert Enum.count(page.events, &(&1.kind == "call" and &1.args =~ "[REDACTED]")) >= 3
  end

  test "a message carrying the cookie is redacted in send and receive events", ctx do
    cookie = ctx.b |> Cluster.call(Node, :get_cookie, []) |> Atom.to_string()
    {:ok, echo} = Cluster.call(ctx.b, TestApp.Echo, :start, [])

    {:ok, s} = start(ctx.a, %{"process" => ProcessRef.to_string(echo), "messages" => "both"})

    assert {:echoed, ^cookie} = Cluster.call(ctx.a, GenServer, :call, [echo, {:echo, cookie}])

    page =
      await(fn ->
        {:ok, page} = events(ctx.a, s.id)
        kinds = Enum.map(page.events, & &1.kind)
        if "receive" in kinds and "send" in kinds, do: page
      end) || flunk("no send and receive events")

    text = inspect(page.events, limit: :infinity, printable_limit: :infinity)
    refute text =~ cookie
    assert Enum.any?(page.events, &(&1.kind == "receive" and &1.message =~ "[REDACTED]"))
  end
end
