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
    if "--node" in argv do
      # Remote: only the code is needed here, ClusterScope runs on the target.
      Mix.Task.run("compile")
      Application.load(:cluster_scope)
    else
      Mix.Task.run("app.start")
      # A VM started just now has not sampled yet.
      if ClusterScope.Health.latest() == nil, do: ClusterScope.Health.sample_now()
    end

    {code, output} = ClusterScope.Health.CLI.main(argv)
    IO.write(output)
    if code != 0, do: exit({:shutdown, code})
  end
end
