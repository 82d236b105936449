defmodule ClusterScope.Package.PackageTest do
  # The Hex package as declared: exactly `package[:files]`, copied to a
  # temporary directory and built as a path dependency of a fresh host
  # application, from source (cargo) and from a precompiled artifact served
  # on loopback (no cargo on PATH, so nothing else could have built it).
  use ExUnit.Case, async: false

  alias ClusterScope.Precompiled

  @moduletag :package
  @moduletag :tmp_dir
  @moduletag timeout: 900_000

  @probe """
  :loaded = ClusterScope.Native.status()
  {:ok, info} = ClusterScope.run("node_build_info", %{node: node()})
  {:ok, %{count: count}} = ClusterScope.operations()
  IO.puts("PROBE core=" <> info.native.core_version <> " ops=" <> Integer.to_string(count))
  """

  setup %{tmp_dir: tmp} do
    # Each build holds a copy of cargo's target directory (~100 MB).
    on_exit(fn -> File.rm_rf(tmp) end)
  end

  defp copy_package(dest) do
    files = Mix.Project.config()[:package][:files]

    for entry <- files, File.exists?(entry) do
      target = Path.join(dest, entry)
      File.mkdir_p!(Path.dirname(target))
      File.cp_r!(entry, target)
    end

    files
  end

  defp host_app(root, dep_dir) do
    File.mkdir_p!(Path.join(root, "lib"))

    File.write!(Path.join(root, "mix.exs"), """
    defmodule Host.MixProject do
      use Mix.Project
      def project, do: [app: :host, version: "0.1.0", deps: [{:cluster_scope, path: #{inspect(dep_dir)}}]]
      def application, do: [extra_applications: [:logger]]
    end
    """)

    File.write!(Path.join([root, "lib", "host.ex"]), "defmodule Host do\nend\n")
  end

  # A clean environment for the inner mix: none of this run's MIX_* settings.
  defp mix(root, args, extra_env) do
    env =
      for {k, _} <- System.get_env(),
          String.starts_with?(k, "MIX_") or k == "CLUSTER_SCOPE_BUILD",
          do: {k, nil}

    env = env ++ [{"MIX_ENV", "dev"} | extra_env]
    System.cmd("mix", args, cd: root, env: env, stderr_to_stdout: true)
  end

  test "the declared files build from source and load in a fresh host app", %{tmp_dir: tmp} do
    dep = Path.join(tmp, "cluster_scope")
    files = copy_package(dep)
    assert "native/cluster_scope_core/benches" in files

    host = Path.join(tmp, "host")
    host_app(host, dep)
    # Warm cargo's cache with this checkout's build of the registry crates:
    # the package's own two crates are still compiled from the copied files.
    File.mkdir_p!(Path.join(host, "_build"))
    {_, 0} = System.cmd("cp", ["-a", "_build/native", Path.join(host, "_build/native")])

    {out, status} = mix(host, ["run", "-e", @probe], [{"CLUSTER_SCOPE_BUILD", "1"}])
    assert status == 0, out
    assert out =~ "Compiling cluster_scope_nif"
    assert out =~ ~r/PROBE core=\d+\.\d+\.\d+ ops=\d+/
  end

  test "a precompiled artifact is installed without cargo, and a tampered one is refused",
       %{tmp_dir: tmp} do
    served = Path.join(tmp, "served")
    File.mkdir_p!(served)

    {:ok, httpd} =
      :inets.start(:httpd,
        port: 0,
        server_name: ~c"package_test",
        server_root: String.to_charlist(tmp),
        document_root: String.to_charlist(served),
        bind_address: {127, 0, 0, 1},
        modules: [:mod_get]
      )

    on_exit(fn -> :inets.stop(:httpd, httpd) end)
    url = "http://127.0.0.1:#{Keyword.fetch!(:httpd.info(httpd), :port)}"

    dep = Path.join(tmp, "cluster_scope")
    copy_package(dep)
    version = Mix.Project.config()[:version]
    lib = Path.join(:code.priv_dir(:cluster_scope), "native/libcluster_scope_nif.so")
    {name, sum} = Precompiled.pack(lib, served, version, Precompiled.target())
    Precompiled.write_checksums(dep, %{name => sum})

    host = Path.join(tmp, "host")
    host_app(host, dep)
    # Only the directories of elixir, erl and the usual tools: no cargo.
    path =
      System.get_env("PATH")
      |> String.split(":")
      |> Enum.reject(&File.exists?(Path.join(&1, "cargo")))
      |> Enum.join(":")

    env = [{"PATH", path}, {"CLUSTER_SCOPE_PRECOMPILED_URL", url}]

    # Tampered first: one byte changed on the server.
    good = File.read!(Path.join(served, name))
    <<head::binary-size(64), b, rest::binary>> = good
    File.write!(Path.join(served, name), <<head::binary, Bitwise.bxor(b, 0xFF), rest::binary>>)

    {out, status} = mix(host, ["compile"], env)
    assert status != 0
    assert out =~ "#{name} was refused"
    assert out =~ "`cargo` was not found"
    refute File.exists?(Path.join(dep, "priv/native/libcluster_scope_nif.so"))

    # The genuine artifact.
    File.write!(Path.join(served, name), good)
    {out, status} = mix(host, ["run", "-e", @probe], env)
    assert status == 0, out
    assert out =~ "downloading #{name}"
    refute out =~ "Compiling cluster_scope_nif"
    assert out =~ ~r/PROBE core=\d+\.\d+\.\d+ ops=\d+/
    assert File.read!(Path.join(dep, "priv/native/libcluster_scope_nif.so")) == File.read!(lib)
  end
end
