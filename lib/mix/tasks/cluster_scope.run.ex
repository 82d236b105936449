defmodule Mix.Tasks.ClusterScope.Run do
  @shortdoc "Runs a distributed check script (exit status for CI)"
  @moduledoc """
  Runs a check script against the cluster:

      mix cluster_scope.run checks/after_deploy.exs
      mix cluster_scope.run checks/after_deploy.exs --node app@10.0.0.5 --cookie SECRET

  The script is Elixir with `ClusterScope.Script` imported (`check/2`,
  `assert_healthy/0`, `assert_nodes/1`, `assert_no_alerts/1`,
  `assert_no_process/1`, `wait_until/3`, `run!/2`, ...). Exit status: 0 when
  every check passed, 1 when one failed, 2 on a usage error or a script that
  raised outside a check.
  """

  use Mix.Task

  @impl true
  def run(argv) do
    ClusterScope.CLI.prepare(argv)
    argv |> ClusterScope.Script.CLI.main() |> ClusterScope.CLI.finish()
  end
end
