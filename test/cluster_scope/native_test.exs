defmodule ClusterScope.NativeTest do
  use ExUnit.Case, async: true

  alias ClusterScope.Native

  test "the NIF is loaded on the test node and reports its build" do
    assert Native.loaded?()
    assert Native.status() == :loaded

    info = Native.build_info()
    assert info.core_version =~ ~r/^\d+\.\d+\.\d+$/
    # The crate and the Mix project are released together.
    assert info.core_version == ClusterScope.version()
    # NIF 2.15 is what OTP 25 loads; 2.17 would not load at all.
    assert info.nif_version == "2.15"

    [arch | _] =
      :erlang.system_info(:system_architecture) |> List.to_string() |> String.split("-")

    assert String.starts_with?(info.target, arch <> "-")
    assert info.profile == "release"
    assert is_integer(info.protocol_version) and info.protocol_version >= 1
  end

  test "build_info of the node includes OTP, Elixir and the core" do
    info = ClusterScope.build_info()
    assert info.node == node()
    assert info.otp_release == List.to_string(:erlang.system_info(:otp_release))
    assert info.elixir_version == System.version()
    assert %{core_version: _} = info.native
  end

  test "the NIF path points at priv/native unless configured" do
    assert Native.nif_path() |> String.ends_with?("priv/native/libcluster_scope_nif")
    assert File.exists?(Native.nif_path() <> ".so")
  end
end
