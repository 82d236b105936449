defmodule ClusterScope.Package.PrecompiledTest do
  # The precompiled-NIF path: artifacts served by a local HTTP server on
  # loopback, checked against the package's checksum file before install.
  use ExUnit.Case, async: true

  alias ClusterScope.Precompiled

  @moduletag :tmp_dir

  setup %{tmp_dir: tmp} do
    served = Path.join(tmp, "served")
    File.mkdir_p!(served)

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        server_name: ~c"precompiled_test",
        server_root: String.to_charlist(tmp),
        document_root: String.to_charlist(served),
        bind_address: {127, 0, 0, 1},
        modules: [:mod_get]
      )

    on_exit(fn -> :inets.stop(:httpd, pid) end)
    port = Keyword.fetch!(:httpd.info(pid), :port)
    lib = Path.join(:code.priv_dir(:cluster_scope), "native/libcluster_scope_nif.so")

    %{served: served, url: "http://127.0.0.1:#{port}", lib: lib, target: Precompiled.target()}
  end

  test "the artifact of this machine is downloaded, checked and installed", ctx do
    {name, sum} = Precompiled.pack(ctx.lib, ctx.served, "9.9.9", ctx.target)
    assert name == "libcluster_scope_nif-v9.9.9-nif-2.15-#{ctx.target}.so.tar.gz"
    dest = Path.join(ctx.tmp_dir, "priv/native/libcluster_scope_nif.so")

    assert :ok = Precompiled.fetch(ctx.url, %{name => sum}, "9.9.9", dest, ctx.target)
    assert File.read!(dest) == File.read!(ctx.lib)
  end

  test "a tampered artifact is refused and nothing is installed", ctx do
    {name, sum} = Precompiled.pack(ctx.lib, ctx.served, "9.9.9", ctx.target)
    path = Path.join(ctx.served, name)
    # Same size, one byte changed: what a corrupted mirror or an attacker serves.
    bytes = File.read!(path)
    <<head::binary-size(100), b, rest::binary>> = bytes
    File.write!(path, <<head::binary, Bitwise.bxor(b, 1), rest::binary>>)
    dest = Path.join(ctx.tmp_dir, "priv/native/libcluster_scope_nif.so")

    assert {:error, message} =
             Precompiled.fetch(ctx.url, %{name => sum}, "9.9.9", dest, ctx.target)

    assert message =~ "#{name} was refused"
    assert message =~ "the package expects #{sum}"
    refute File.exists?(dest)
  end

  test "a machine without an artifact, a missing file and a bad checksum entry are clear errors",
       ctx do
    dest = Path.join(ctx.tmp_dir, "lib.so")
    {name, sum} = Precompiled.pack(ctx.lib, ctx.served, "9.9.9", ctx.target)

    assert {:error, m1} = Precompiled.fetch(ctx.url, %{}, "9.9.9", dest, ctx.target)
    assert m1 =~ "no precompiled artifact for this machine"

    # Named in the checksums but not on the server.
    File.rm!(Path.join(ctx.served, name))
    assert {:error, m2} = Precompiled.fetch(ctx.url, %{name => sum}, "9.9.9", dest, ctx.target)
    assert m2 =~ "answered HTTP 404"

    assert {:error, m3} =
             Precompiled.fetch(ctx.url, %{name => "md5:abc"}, "9.9.9", dest, ctx.target)

    assert m3 =~ "not a sha256"

    # Nothing listens there.
    assert {:error, m4} =
             Precompiled.fetch("http://127.0.0.1:1", %{name => sum}, "9.9.9", dest, ctx.target)

    assert m4 =~ "could not be downloaded"
    refute File.exists?(dest)
  end

  test "the checksum file is read as data, never evaluated", ctx do
    root = ctx.tmp_dir
    Precompiled.write_checksums(root, %{"b.tar.gz" => "sha256:02", "a.tar.gz" => "sha256:01"})

    assert {:ok, %{"a.tar.gz" => "sha256:01", "b.tar.gz" => "sha256:02"}} =
             Precompiled.read_checksums(root)

    File.write!(Path.join(root, Precompiled.checksum_file()), ~s|%{"a" => System.halt(1)}|)
    assert {:error, {:checksum_file, _}} = Precompiled.read_checksums(root)

    File.write!(Path.join(root, Precompiled.checksum_file()), ~s|File.rm_rf!("/")|)
    assert {:error, {:checksum_file, _}} = Precompiled.read_checksums(root)

    File.rm!(Path.join(root, Precompiled.checksum_file()))
    assert {:error, :no_checksum_file} = Precompiled.read_checksums(root)
  end

  test "the target triple is this machine's, as Rust names it" do
    target = Precompiled.target()
    arch = :erlang.system_info(:system_architecture) |> List.to_string()
    assert String.starts_with?(target, hd(String.split(arch, "-")))

    if String.contains?(arch, "linux"),
      do: assert(target =~ ~r/^[a-z0-9_]+-unknown-linux-(gnu|musl)/)
  end
end
