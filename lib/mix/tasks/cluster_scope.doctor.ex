defmodule Mix.Tasks.ClusterScope.Doctor do
  @shortdoc "Checks the setup of every node and of the cluster, with remediations"
  @moduledoc """
  Runs the `cluster_doctor` operation (here, or on `--node`) and prints each
  finding with its remediation:

      mix cluster_scope.doctor [--node NODE --cookie COOKIE] [--json]

  Exit status: 0 nothing found, 1 warnings, 2 critical findings, 3 the check
  could not run. See `ClusterScope.Doctor` for what is checked.
  """

  use Mix.Task

  @impl true
  def run(argv) do
    ClusterScope.CLI.prepare(argv)
    argv |> ClusterScope.Doctor.CLI.main() |> ClusterScope.CLI.finish()
  end
end
