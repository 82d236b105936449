defmodule Mix.Tasks.Compile.ClusterScopeNative do
  @moduledoc false
  # Builds the Rust NIF with cargo and installs it as
  # priv/native/libcluster_scope_nif.so. Defined here rather than taken from
  # rustler's or elixir_make's Hex packages: hex.pm is not a build requirement.
  use Mix.Task.Compiler

  @crate "cluster_scope_nif"
  @lib_name "libcluster_scope_nif"
  @sources ["Cargo.toml", "Cargo.lock", "native"]

  @impl true
  def run(_args) do
    root = File.cwd!()
    dest = Path.join([root, "priv", "native", @lib_name <> ".so"])

    if up_to_date?(root, dest) do
      {:noop, []}
    else
      build!(root, dest)
      {:ok, []}
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
      files: ~w(lib native/cluster_scope_core/src native/cluster_scope_core/Cargo.toml
                native/cluster_scope_core/build.rs native/cluster_scope_nif/src
                native/cluster_scope_nif/Cargo.toml Cargo.toml Cargo.lock priv/static
                mix.exs README.md ARCHITECTURE.md)
    ]
  end
end
