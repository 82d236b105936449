Code.require_file("native/precompiled.exs", __DIR__)

defmodule Mix.Tasks.Compile.ClusterScopeNative do
  @moduledoc false
  # Installs the Rust NIF as priv/native/libcluster_scope_nif.so: the
  # precompiled artifact of this machine when a base URL is configured and the
  # package's checksum file names it (ClusterScope.Precompiled), else built
  # with cargo. Defined here rather than taken from rustler's, elixir_make's or
  # rustler_precompiled's Hex packages: hex.pm is not a build requirement.
  use Mix.Task.Compiler

  @crate "cluster_scope_nif"
  @lib_name "libcluster_scope_nif"
  @sources ["Cargo.toml", "Cargo.lock", "native"]

  @impl true
  def run(_args) do
    root = File.cwd!()
    dest = Path.join([root, "priv", "native", @lib_name <> ".so"])

    cond do
      up_to_date?(root, dest) ->
        {:noop, []}

      url = precompiled_url() ->
        case install_precompiled(root, url, dest) do
          :ok ->
            {:ok, []}

          {:error, reason} ->
            Mix.shell().info("cluster_scope: precompiled NIF not used: #{reason}")
            Mix.shell().info("cluster_scope: building the NIF from source with cargo instead")
            build!(root, dest)
            {:ok, []}
        end

      true ->
        build!(root, dest)
        {:ok, []}
    end
  end

  # CLUSTER_SCOPE_BUILD=1 forces the source build; otherwise the base URL
  # comes from CLUSTER_SCOPE_PRECOMPILED_URL or `config :cluster_scope,
  # precompiled_url: ...` in the host's configuration.
  defp precompiled_url do
    if System.get_env("CLUSTER_SCOPE_BUILD") in ["1", "true"] do
      nil
    else
      System.get_env("CLUSTER_SCOPE_PRECOMPILED_URL") ||
        Application.get_env(:cluster_scope, :precompiled_url)
    end
  end

  defp install_precompiled(root, url, dest) do
    version = Mix.Project.config()[:version]

    with {:ok, checksums} <- ClusterScope.Precompiled.read_checksums(root) do
      Mix.shell().info(
        "cluster_scope: downloading #{ClusterScope.Precompiled.artifact_name(version)} from #{url}"
      )

      ClusterScope.Precompiled.fetch(url, checksums, version, dest)
    else
      {:error, :no_checksum_file} ->
        {:error, "the package has no #{ClusterScope.Precompiled.checksum_file()}"}

      {:error, {:checksum_file, reason}} ->
        {:error, "#{ClusterScope.Precompiled.checksum_file()}: #{reason}"}
    end
  end

  defp build!(root, dest) do
    cargo =
      System.find_executable("cargo") ||
        Mix.raise("""
        cluster_scope: `cargo` was not found on PATH.
        ClusterScope's core is written in Rust and is built when the project compiles.
        Install Rust (https://rustup.rs) and make sure `cargo` is on PATH, then retry.
        """)

    target_dir = Path.join(Mix.Project.build_path() |> Path.dirname(), "native")
    Mix.shell().info("Compiling #{@crate} (cargo build --release)")

    args = ["build", "--release", "--locked", "-p", @crate, "--target-dir", target_dir]

    case System.cmd(cargo, args, cd: root, stderr_to_stdout: true, into: IO.stream()) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cluster_scope: cargo build failed with exit status #{status}")
    end

    built =
      Enum.find(
        [".so", ".dylib"],
        &File.exists?(Path.join([target_dir, "release", @lib_name <> &1]))
      ) || Mix.raise("cluster_scope: cargo finished but produced no #{@lib_name} library")

    File.mkdir_p!(Path.dirname(dest))
    # Remove first: overwriting a loaded shared object in place can crash a VM
    # that has it mapped; a new inode leaves running VMs untouched.
    File.rm(dest)
    File.cp!(Path.join([target_dir, "release", @lib_name <> built]), dest)
  end

  defp up_to_date?(root, dest) do
    case File.stat(dest, time: :posix) do
      {:ok, %{mtime: built_at}} ->
        @sources
        |> Enum.flat_map(&source_files(Path.join(root, &1)))
        |> Enum.all?(fn file -> File.stat!(file, time: :posix).mtime <= built_at end)

      {:error, _} ->
        false
    end
  end

  defp source_files(path) do
    cond do
      File.regular?(path) ->
        [path]

      File.dir?(path) ->
        Path.wildcard(Path.join(path, "**/*"))
        |> Enum.reject(&String.contains?(&1, ["/target/", "/fuzz/"]))
        |> Enum.filter(&File.regular?/1)

      true ->
        []
    end
  end
end

defmodule ClusterScope.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :cluster_scope,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:cluster_scope_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(),
      description: "Debugging and monitoring toolkit for whole BEAM clusters, with a Rust core",
      package: package(),
      test_coverage: [ignore_modules: [~r/^ClusterScope\.Test\./]]
    ]
  end

  def application do
    [
      mod: {ClusterScope.Application, []},
      extra_applications: [:logger, :runtime_tools, :crypto, :inets]
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # Optional integrations are declared only when Hex is present: Mix refuses
  # any Hex dependency without Hex, even an optional one. The code that uses
  # them checks `Code.ensure_loaded?/1` at run time.
  defp deps do
    if Code.ensure_loaded?(Hex) do
      [
        {:horde, "~> 0.10", optional: true},
        {:libcluster, "~> 3.5", optional: true},
        {:telemetry, "~> 1.0", optional: true},
        {:plug, "~> 1.14", optional: true}
      ]
    else
      []
    end
  end

  defp package do
    [
      licenses: ["Apache-2.0"],
      # Exactly what a dependency build needs: the core's Cargo.toml declares
      # its benches, so cargo refuses the manifest without them. The checksum
      # file exists once release artifacts are built
      # (`mix cluster_scope.native.package`).
      files: ~w(lib native/cluster_scope_core/src native/cluster_scope_core/benches
                native/cluster_scope_core/Cargo.toml native/cluster_scope_core/build.rs
                native/cluster_scope_nif/src native/cluster_scope_nif/Cargo.toml
                native/precompiled.exs Cargo.toml Cargo.lock priv/static
                checksum-cluster_scope.exs guides mix.exs README.md ARCHITECTURE.md)
    ]
  end
end
