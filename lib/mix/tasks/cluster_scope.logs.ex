defmodule Mix.Tasks.ClusterScope.Logs do
  @shortdoc "Prints the cluster's recent log events, merged by time (--follow)"
  @moduledoc """
  The recent log events of every node, merged by time and filtered:

      mix cluster_scope.logs --level warning
      mix cluster_scope.logs --module MyApp.Cart --grep timeout --follow
      mix cluster_scope.logs --nodes a@10.0.0.5 --node a@10.0.0.5 --cookie SECRET

  See `ClusterScope.Logs.CLI` for every flag and `ClusterScope.Logs` for
  what each node keeps.
  """

  use Mix.Task

  @impl true
  def run(argv) do
    ClusterScope.CLI.prepare(argv)
    argv |> ClusterScope.Logs.CLI.main() |> ClusterScope.CLI.finish()
  end
end
