defmodule ClusterScope.Precompiled do
  @moduledoc false
  # Precompiled NIF artifacts, as rustler_precompiled users know them, without
  # that Hex package (hex.pm is not a build requirement). Loaded by mix.exs,
  # so it runs before any of the library is compiled: OTP and Elixir only.
  #
  # An artifact is `libcluster_scope_nif-v<version>-nif-<nif>-<target>.so.tar.gz`,
  # a gzip'd tar holding `libcluster_scope_nif.so`. The package ships
  # `checksum-cluster_scope.exs`, a map of artifact name => "sha256:<hex>",
  # written by `mix cluster_scope.native.package`. At compile time, when a base
  # URL is configured and the checksum file names the artifact of this
  # machine, the artifact is downloaded with :httpc, checked against its
  # checksum, and installed; anything else falls back to cargo.

  @lib_name "libcluster_scope_nif"
  # rustler's default NIF version; OTP 25 and later load it.
  @nif_version "2.15"
  @checksum_file "checksum-cluster_scope.exs"
  @max_bytes 64 * 1024 * 1024

  def lib_name, do: @lib_name
  def nif_version, do: @nif_version
  def checksum_file, do: @checksum_file

  @doc "The Rust target triple of this VM's machine."
  def target do
    arch = :erlang.system_info(:system_architecture) |> List.to_string()

    case String.split(arch, "-") do
      [cpu, _vendor, "linux", abi | _] -> "#{cpu}-unknown-linux-#{abi}"
      [cpu, _vendor, "linux"] -> "#{cpu}-unknown-linux-gnu"
      [cpu, "apple", "darwin" <> _ | _] -> "#{normalise_cpu(cpu)}-apple-darwin"
      [cpu, _vendor, "freebsd" <> _ | _] -> "#{cpu}-unknown-freebsd"
      _ -> arch
    end
  end

  defp normalise_cpu("arm"), do: "aarch64"
  defp normalise_cpu(cpu), do: cpu

  @doc "The artifact's file name for a version and target."
  def artifact_name(version, target \\ target()) do
    "#{@lib_name}-v#{version}-nif-#{@nif_version}-#{target}.so.tar.gz"
  end

  @doc "Reads the checksum file of the package: a map name => \"sha256:hex\"."
  def read_checksums(root) do
    path = Path.join(root, @checksum_file)

    with {:ok, text} <- File.read(path),
         {map, _} when is_map(map) <- safe_eval(text) do
      {:ok, map}
    else
      {:error, :enoent} -> {:error, :no_checksum_file}
      {:error, reason} -> {:error, {:checksum_file, reason}}
      _ -> {:error, {:checksum_file, "not a map of artifact names to checksums"}}
    end
  end

  # The checksum file is data: a literal map of strings, nothing evaluated.
  defp safe_eval(text) do
    case Code.string_to_quoted(text) do
      {:ok, {:%{}, _, pairs}} ->
        if Enum.all?(pairs, fn {k, v} -> is_binary(k) and is_binary(v) end),
          do: {Map.new(pairs), []},
          else: {:error, "entries must be \"name\" => \"sha256:...\""}

      {:ok, _} ->
        {:error, "not a map"}

      {:error, _} ->
        {:error, "not valid Elixir syntax"}
    end
  end

  @doc "Writes the checksum file (sorted, one entry per line)."
  def write_checksums(root, map) do
    body =
      map
      |> Enum.sort()
      |> Enum.map_join(",\n", fn {name, sum} -> "  #{inspect(name)} => #{inspect(sum)}" end)

    File.write!(Path.join(root, @checksum_file), "%{\n" <> body <> "\n}\n")
  end

  @doc "sha256 of a binary, as the checksum file writes it."
  def checksum(bytes), do: "sha256:" <> Base.encode16(:crypto.hash(:sha256, bytes), case: :lower)

  @doc """
  Packs a built library into an artifact in `out_dir`; answers `{name, checksum}`.
  """
  def pack(lib_path, out_dir, version, target) do
    name = artifact_name(version, target)
    File.mkdir_p!(out_dir)
    dest = Path.join(out_dir, name)

    :ok =
      :erl_tar.create(
        String.to_charlist(dest),
        [{String.to_charlist(@lib_name <> ".so"), String.to_charlist(lib_path)}],
        [:compressed]
      )

    {name, checksum(File.read!(dest))}
  end

  @doc """
  Downloads the artifact for `version` from `base_url`, checks it against
  `checksums`, and installs its library at `dest`. Answers `:ok` or
  `{:error, reason}` with a reason meant for a person; never raises.
  """
  def fetch(base_url, checksums, version, dest, target \\ target()) do
    name = artifact_name(version, target)

    with {:ok, expected} <- expected(checksums, name),
         {:ok, bytes} <- download(String.trim_trailing(base_url, "/") <> "/" <> name),
         :ok <- verify(name, bytes, expected),
         {:ok, lib} <- unpack(bytes) do
      File.mkdir_p!(Path.dirname(dest))
      # A new inode: a VM that has the old library mapped is unaffected.
      File.rm(dest)
      File.write!(dest, lib)
      :ok
    end
  end

  defp expected(checksums, name) do
    case Map.fetch(checksums, name) do
      {:ok, "sha256:" <> _ = sum} ->
        {:ok, sum}

      {:ok, other} ->
        {:error, "the checksum of #{name} is not a sha256 (#{inspect(other)})"}

      :error ->
        {:error, "no precompiled artifact for this machine (#{name} is not in #{@checksum_file})"}
    end
  end

  defp verify(name, bytes, expected) do
    case checksum(bytes) do
      ^expected ->
        :ok

      actual ->
        {:error,
         "#{name} was refused: its checksum is #{actual}, the package expects #{expected} " <>
           "(a corrupted or tampered download)"}
    end
  end

  defp unpack(bytes) do
    want = String.to_charlist(@lib_name <> ".so")

    case :erl_tar.extract({:binary, bytes}, [:compressed, :memory, {:files, [want]}]) do
      {:ok, [{^want, lib}]} -> {:ok, lib}
      {:ok, _} -> {:error, "the artifact does not hold #{@lib_name}.so"}
      {:error, reason} -> {:error, "the artifact is not a gzip'd tar: #{inspect(reason)}"}
    end
  end

  defp download(url) do
    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, _} = Application.ensure_all_started(:ssl)

    request = {String.to_charlist(url), []}
    http_opts = [timeout: 60_000, connect_timeout: 10_000, autoredirect: true] ++ tls_opts(url)

    case :httpc.request(:get, request, http_opts, body_format: :binary) do
      {:ok, {{_, 200, _}, _, body}} when byte_size(body) <= @max_bytes -> {:ok, body}
      {:ok, {{_, 200, _}, _, _}} -> {:error, "#{url} is larger than #{@max_bytes} bytes"}
      {:ok, {{_, status, _}, _, _}} -> {:error, "#{url} answered HTTP #{status}"}
      {:error, reason} -> {:error, "#{url} could not be downloaded: #{inspect(reason)}"}
    end
  end

  # HTTPS with the system's CA store and host name checks (OTP 25).
  defp tls_opts("https://" <> _) do
    [
      ssl: [
        verify: :verify_peer,
        cacerts: :public_key.cacerts_get(),
        customize_hostname_check: [
          match_fun: :public_key.pkix_verify_hostname_match_fun(:https)
        ]
      ]
    ]
  end

  defp tls_opts(_), do: []
end
