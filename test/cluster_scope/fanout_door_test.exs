defmodule ClusterScope.FanoutDoorTest do
  # Fanout is the one door out: no other module of lib/ calls another node
  # itself (:erpc, :rpc, Node.spawn), so timeouts and per-node errors are
  # decided in one place.
  use ExUnit.Case, async: true

  # LocalCluster controls the peers it starts (harness, demo, the
  # :local_cluster mode), over standard I/O or distribution.
  @allowed ["lib/cluster_scope/fanout.ex", "lib/cluster_scope/local_cluster.ex"]
  test "only Fanout calls other nodes" do
    offenders =
      for file <- Path.wildcard("lib/**/*.ex"),
          file not in @allowed,
          {line, n} <- file |> File.read!() |> String.split("\n") |> Enum.with_index(1),
          not String.starts_with?(String.trim_leading(line), "#"),
          Regex.match?(~r/:erpc\.|:rpc\.(call|multicall|cast)|Node\.spawn/, line),
          do: "#{file}:#{n}: #{String.trim(line)}"

    assert offenders == [], "calls to other nodes outside Fanout:\n" <> Enum.join(offenders, "\n")
  end
end
