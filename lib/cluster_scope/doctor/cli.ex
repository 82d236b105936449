defmodule ClusterScope.Doctor.CLI do
  @moduledoc """
  `mix cluster_scope.doctor [--node NODE --cookie COOKIE] [--json]`: exit 0
  when nothing is found, 1 on warnings, 2 on a critical finding, 3 when the
  check could not run (usage, connection).
  """

  @switches [node: :string, cookie: :string, json: :boolean, help: :boolean]
  @usage "Usage: mix cluster_scope.doctor [--node NODE --cookie COOKIE] [--json]\n"

  @doc "Runs the check; returns the exit code and the output."
  @spec main([String.t()]) :: {0 | 1 | 2 | 3, iodata()}
  def main(argv) do
    case OptionParser.parse(argv, strict: @switches, aliases: [h: :help]) do
      {opts, [], []} ->
        if opts[:help], do: {0, @usage}, else: check(opts)

      {_, extra, []} ->
        {3, "Unexpected arguments: #{Enum.join(extra, " ")}\n" <> @usage}

      {_, _, invalid} ->
        {3, "Unknown options: #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n" <> @usage}
    end
  end

  defp check(opts) do
    with {:ok, target} <- ClusterScope.CLI.connect(opts),
         {:ok, {:ok, data, _meta}} <-
           ClusterScope.CLI.remote(target, ClusterScope.Operation.Runner, :run, [
             "cluster_doctor",
             %{}
           ]) do
      code = %{ok: 0, warning: 1, critical: 2}[data.status]
      {code, render(data, opts)}
    else
      {:ok, {:error, error, _}} -> {3, "error (#{error.code}): #{error.message}\n"}
      {:error, message} -> {3, message <> "\n"}
    end
  end

  defp render(data, opts) do
    if opts[:json] do
      {:ok, json} = ClusterScope.JSON.encode(data)
      [json, "\n"]
    else
      lines =
        for f <- data.findings do
          [
            "#{String.upcase(to_string(f.severity))} #{f.node} #{f.id}: #{f.message}\n",
            "  -> #{f.remediation}\n"
          ]
        end

      errors = for e <- data.node_errors, do: "WARNING #{e.node} did not answer: #{e.reason}\n"

      summary =
        "#{data.status}: #{length(data.findings)} finding(s) on #{length(data.checked_nodes)} node(s)\n"

      [lines, errors, summary]
    end
  end
end
