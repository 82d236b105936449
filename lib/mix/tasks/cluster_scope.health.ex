defmodule Mix.Tasks.ClusterScope.Health do
  @shortdoc "Prints the cluster's health; exits 0 healthy, 1 warning, 2 critical"
  @moduledoc """
  A health probe for scripts and monitoring systems.

      mix cluster_scope.health
      mix cluster_scope.health --node app@10.0.0.5 --cookie SECRET
      mix cluster_scope.health --node app@10.0.0.5 --cookie SECRET --json

  Prints the connectivity of the cluster, each node's resources (memory,
  processes, run queue, scheduler utilisation, longest message queue,
  whether its monitor is throttled) and every active alert with its
  remediation. Exits 0 when healthy, 1 when degraded (warning alerts,
  connectivity problems, nodes that do not answer), 2 when critical, 3 when
  the health cannot be read or on a usage error. See `ClusterScope.Health.CLI`.
  """

  use Mix.Task

  @impl true
  def run(argv) do
    # A VM started just now has not sampled yet.
    if ClusterScope.CLI.prepare(argv) == :local and ClusterScope.Health.latest() == nil,
      do: ClusterScope.Health.sample_now()

    argv |> ClusterScope.Health.CLI.main() |> ClusterScope.CLI.finish()
  end
end
