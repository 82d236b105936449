defmodule Mix.Tasks.ClusterScope.Op do
  @shortdoc "Runs a ClusterScope operation from the command line"
  @moduledoc """
  Runs any ClusterScope operation, with flags generated from its metadata.

      mix cluster_scope.op --list
      mix cluster_scope.op node_build_info --help
      mix cluster_scope.op node_build_info --param node=app@10.0.0.5 --json
      mix cluster_scope.op list_operations --node app@10.0.0.5 --cookie SECRET

  Exits 0 on success, 1 when the operation fails, 2 on a usage error. See
  `ClusterScope.CLI` for the details.
  """

  use Mix.Task

  @impl true
  def run(argv) do
    ClusterScope.CLI.prepare(argv)
    argv |> ClusterScope.CLI.main() |> ClusterScope.CLI.finish()
  end
end
