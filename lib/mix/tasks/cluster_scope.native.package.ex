defmodule Mix.Tasks.ClusterScope.Native.Package do
  @shortdoc "Builds a precompiled NIF artifact and records its checksum"
  @moduledoc """
  Builds the release artifact of the NIF for one target, as the package's
  precompiled download expects it, and records its checksum in
  `checksum-cluster_scope.exs` (which ships in the package).

      mix cluster_scope.native.package                         # this machine's target
      mix cluster_scope.native.package --target aarch64-unknown-linux-gnu
      mix cluster_scope.native.package --out dist

  The artifact is `libcluster_scope_nif-v<version>-nif-<nif version>-<target>.so.tar.gz`
  in `--out` (default `_build/artifacts`). Upload the artifacts to one
  place (a release page, an internal mirror); users point
  `CLUSTER_SCOPE_PRECOMPILED_URL` (or `config :cluster_scope, precompiled_url:`)
  at it, and the compile step downloads the artifact of their machine,
  checks it against the checksum file and installs it, or builds from source
  with cargo when there is none (`CLUSTER_SCOPE_BUILD=1` always builds).

  Cross targets need the Rust target installed (`rustup target add ...`)
  and its linker.
  """

  use Mix.Task

  alias ClusterScope.Precompiled

  @impl true
  def run(argv) do
    {opts, _, invalid} = OptionParser.parse(argv, strict: [target: :string, out: :string])

    if invalid != [] do
      Mix.raise("Usage: mix cluster_scope.native.package [--target TRIPLE] [--out DIR]")
    end

    root = File.cwd!()
    target = opts[:target] || Precompiled.target()
    out = Path.expand(opts[:out] || "_build/artifacts", root)
    version = Mix.Project.config()[:version]
    lib = build(root, opts[:target])

    {name, sum} = Precompiled.pack(lib, out, version, target)

    checksums =
      case Precompiled.read_checksums(root) do
        {:ok, map} -> map
        {:error, :no_checksum_file} -> %{}
        {:error, reason} -> Mix.raise("#{Precompiled.checksum_file()}: #{inspect(reason)}")
      end

    Precompiled.write_checksums(root, Map.put(checksums, name, sum))

    Mix.shell().info(
      "#{Path.join(out, name)}\n#{sum}\nrecorded in #{Precompiled.checksum_file()}"
    )
  end

  defp build(root, cross) do
    cargo = System.find_executable("cargo") || Mix.raise("`cargo` was not found on PATH")
    target_dir = Path.join(root, "_build/native")

    args =
      ["build", "--release", "--locked", "-p", "cluster_scope_nif", "--target-dir", target_dir] ++
        if(cross, do: ["--target", cross], else: [])

    case System.cmd(cargo, args, cd: root, stderr_to_stdout: true, into: IO.stream()) do
      {_, 0} -> :ok
      {_, status} -> Mix.raise("cargo build failed with exit status #{status}")
    end

    dir = Path.join([target_dir | if(cross, do: [cross, "release"], else: ["release"])])
    lib = Path.join(dir, Precompiled.lib_name() <> ".so")
    if File.regular?(lib), do: lib, else: Mix.raise("cargo produced no #{lib}")
  end
end
