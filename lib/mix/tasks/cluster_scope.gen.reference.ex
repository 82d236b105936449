defmodule Mix.Tasks.ClusterScope.Gen.Reference do
  @shortdoc "Writes guides/operations.md from the operations' metadata"
  @moduledoc """
  Writes the operations reference, `guides/operations.md`, from the
  built-in operations' metadata and module docs (`ClusterScope.Reference`).

      mix cluster_scope.gen.reference
      mix cluster_scope.gen.reference --check   # exit 1 when the file is stale

  Run it after adding or changing an operation; the test suite fails while
  the file is stale.
  """

  use Mix.Task

  @path "guides/operations.md"

  @impl true
  def run(argv) do
    Mix.Task.run("compile")
    {opts, _, _} = OptionParser.parse(argv, strict: [check: :boolean])
    text = ClusterScope.Reference.operations_markdown()

    cond do
      opts[:check] && File.read(@path) == {:ok, text} ->
        Mix.shell().info("#{@path} is up to date")

      opts[:check] ->
        Mix.shell().error("#{@path} is stale: run mix cluster_scope.gen.reference")
        exit({:shutdown, 1})

      true ->
        File.mkdir_p!(Path.dirname(@path))
        File.write!(@path, text)
        Mix.shell().info("wrote #{@path}")
    end
  end
end
