defmodule Mix.Tasks.Compile.ClusterScopeNativeTest do
  # The Mix compiler of the Rust core, defined in mix.exs: a no-op when
  # nothing changed, and a clear message when cargo is missing.
  use ExUnit.Case, async: true

  @root File.cwd!()

  test "with nothing changed since the library was built, it does nothing" do
    {out, 0} =
      System.cmd("mix", ["compile.cluster_scope_native"],
        cd: @root,
        env: [{"MIX_ENV", "test"}],
        stderr_to_stdout: true
      )

    refute out =~ "cargo"
    refute out =~ "Compiling"
  end

  @tag :tmp_dir
  test "without cargo on PATH it fails with a message that says what to install", %{
    tmp_dir: dir
  } do
    # The project as a fresh checkout has it: sources, no built library.
    File.mkdir_p!(Path.join(dir, "native"))

    for file <- ["mix.exs", "Cargo.toml", "Cargo.lock", "native/precompiled.exs"],
        do: File.cp!(Path.join(@root, file), Path.join(dir, file))

    # Only what Elixir needs; cargo lives elsewhere (~/.cargo/bin).
    path =
      ["elixir", "erl"]
      |> Enum.map(&(System.find_executable(&1) |> Path.dirname()))
      |> Enum.uniq()
      |> Enum.join(":")

    assert is_nil(Enum.find(String.split(path, ":"), &File.exists?(Path.join(&1, "cargo")))),
           "cargo is installed next to elixir here: this test cannot hide it"

    {out, status} =
      System.cmd(System.find_executable("mix"), ["compile.cluster_scope_native"],
        cd: dir,
        env: [{"MIX_ENV", "test"}, {"PATH", path}],
        stderr_to_stdout: true
      )

    assert status != 0
    assert out =~ "`cargo` was not found on PATH"
    assert out =~ "https://rustup.rs"
    refute File.exists?(Path.join([dir, "priv", "native", "libcluster_scope_nif.so"]))
  end
end
