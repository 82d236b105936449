defmodule ClusterScope.Horde.RegistrySecretsTest do
  # Real Horde 0.10 in the test VM (ERL_LIBS=/tmp/3p/lib): what a Horde
  # registry holds is the host's data - session keys, connection options,
  # credentials. Its entries are shown only with the admin token (like a
  # process's state), and a password or the cookie in a registry value or
  # key never leaves the node, whatever its shape (a map, a keyword list, a
  # tuple): the entries are redacted before they are turned into JSON,
  # where a keyword list becomes `{"$tuple": [...]}` maps and its keys can
  # no longer be recognised.
  use ExUnit.Case, async: false

  @moduletag :horde

  alias ClusterScope.Test.HTTP
  alias ClusterScope.Web.Endpoint

  @token "horde-secrets-admin-token-0123456789"
  @read_token "horde-secrets-read-token-0123456789"
  @registry ClusterScope.Test.SecretsReg
  @password "hunter2-registry-password"

  setup_all do
    {:ok, _} = Application.ensure_all_started(:horde)
    parent = self()

    holder =
      spawn(fn ->
        {:ok, _} = apply(Horde.Registry, :start_link, [[name: @registry, keys: :unique]])
        send(parent, :started)
        Process.sleep(:infinity)
      end)

    assert_receive :started, 10_000
    cookie = Atom.to_string(Node.get_cookie())

    entries = [
      {"map", %{password: @password, user: "app"}},
      {"keyword", [hostname: "db", password: @password]},
      {"tuple", {:conn, [password: @password]}},
      {"string_keys", %{"db_password" => @password}},
      {"cookie", {:cookie_copy, Node.get_cookie()}},
      {{:session, cookie}, :ok}
    ]

    registrar =
      spawn(fn ->
        for {key, value} <- entries,
            do: {:ok, _} = apply(Horde.Registry, :register, [@registry, key, value])

        send(parent, :registered)
        Process.sleep(:infinity)
      end)

    assert_receive :registered, 10_000

    on_exit(fn ->
      Process.exit(registrar, :kill)
      # Stopped cleanly (a killed holder would take the registry down with a crash report).
      case Process.whereis(Module.concat(@registry, Supervisor)) do
        nil -> :ok
        sup -> Supervisor.stop(sup)
      end

      Process.exit(holder, :kill)
    end)

    %{cookie: cookie}
  end

  setup do
    {:ok, endpoint} = Endpoint.start(port: 0, token: @token, read_token: @read_token)
    on_exit(fn -> Endpoint.stop(endpoint) end)
    %{endpoint: endpoint}
  end

  defp entries_url(endpoint),
    do: endpoint.url <> "/api/v1/horde/registries?registry=" <> inspect(@registry)

  test "registry values and keys holding a password or the cookie come back redacted", ctx do
    auth = [{"authorization", "Bearer " <> @token}]
    assert {200, body, _} = HTTP.get(entries_url(ctx.endpoint), headers: auth)
    assert body["data"]["total"] == 6
    text = ClusterScope.JSON.encode!(body)

    refute text =~ @password
    refute text =~ ctx.cookie
    assert text =~ "[REDACTED]"
    # The entries are still there, with their non-secret parts.
    assert text =~ "hostname"
    assert text =~ "\"app\""
  end

  test "a key_contains filter matches the redacted key, never the secret in it", ctx do
    auth = [{"authorization", "Bearer " <> @token}]
    probe = String.slice(ctx.cookie, 0, 4)
    url = entries_url(ctx.endpoint) <> "&key_contains=" <> URI.encode_www_form(probe)
    assert {200, %{"data" => data}, _} = HTTP.get(url, headers: auth)
    assert data["total"] == 0
  end

  test "the entries need the admin token: anonymous 401, read token 403", ctx do
    read = [{"authorization", "Bearer " <> @read_token}]
    assert {401, %{"error" => _}, _} = HTTP.get(entries_url(ctx.endpoint))
    assert {403, %{"error" => e}, _} = HTTP.get(entries_url(ctx.endpoint), headers: read)
    assert e["message"] =~ "read token"
  end

  test "the listing of registries is sensitive too; the admin token reads it", ctx do
    read = [{"authorization", "Bearer " <> @read_token}]
    auth = [{"authorization", "Bearer " <> @token}]
    url = ctx.endpoint.url <> "/api/v1/horde/registries"
    assert {403, _, _} = HTTP.get(url, headers: read)
    assert {200, %{"data" => data}, _} = HTTP.get(url, headers: auth)

    names = Enum.map(data["registries"], & &1["name"])
    assert Enum.any?(names, &(&1 =~ "SecretsReg"))
  end
end
