defmodule ClusterScope.Logs.CLI do
  @moduledoc """
  `mix cluster_scope.logs`: the cluster's recent log events, merged by time.

      mix cluster_scope.logs [--level warning] [--nodes a@h,b@h] [--module MyApp.Cart]
                             [--grep text] [--limit 100] [--follow] [--json]
                             [--node NODE --cookie COOKIE]

  Runs the `cluster_logs` operation (here, or on `--node`, connected to as a
  hidden node), prints one line per event (`time node level module message`),
  and with `--follow` asks again every `--interval-ms` (1,000) for what came
  after, until interrupted. `--nodes` filters by node; `--node` is the node to
  connect to. Exit status: 0, 1 when the operation fails, 2 on a usage error.
  """

  @switches [
    level: :string,
    nodes: :string,
    module: :keep,
    grep: :string,
    limit: :integer,
    follow: :boolean,
    interval_ms: :integer,
    json: :boolean,
    node: :string,
    cookie: :string,
    help: :boolean
  ]
  @usage """
  Usage: mix cluster_scope.logs [--level LEVEL] [--nodes a,b] [--module M]... [--grep TEXT]
                                [--limit N] [--follow [--interval-ms MS]] [--json]
                                [--node NODE --cookie COOKIE]
  """

  @doc """
  Runs the command. `emit` receives each piece of output as it is ready (with
  `--follow` the command runs until `polls` answers have been printed:
  `:infinity` from the mix task). Returns the exit code and the final output.
  """
  @spec main([String.t()], (iodata() -> any()), pos_integer() | :infinity) ::
          {0 | 1 | 2, iodata()}
  def main(argv, emit \\ &IO.write/1, polls \\ :infinity) do
    case OptionParser.parse(argv, strict: @switches, aliases: [h: :help]) do
      {opts, [], []} ->
        cond do
          opts[:help] -> {0, @usage}
          true -> run(opts, emit, polls)
        end

      {_, extra, []} ->
        {2, "Unexpected arguments: #{Enum.join(extra, " ")}\n" <> @usage}

      {_, _, invalid} ->
        {2,
         "Unknown or malformed options: #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n" <> @usage}
    end
  end

  defp run(opts, emit, polls) do
    params =
      %{
        "level" => opts[:level],
        "nodes" => if(opts[:nodes], do: String.split(opts[:nodes], ",", trim: true)),
        "modules" =>
          case Keyword.get_values(opts, :module) do
            [] -> nil
            list -> list
          end,
        "contains" => opts[:grep],
        "limit" => opts[:limit]
      }
      |> Enum.reject(fn {_, v} -> is_nil(v) end)
      |> Map.new()

    with {:ok, target} <- ClusterScope.CLI.connect(opts) do
      loop(target, params, opts, emit, polls)
    else
      {:error, message} -> {2, message <> "\n"}
    end
  end

  defp loop(target, params, opts, emit, polls) do
    case ClusterScope.CLI.remote(target, ClusterScope.Operation.Runner, :run, [
           "cluster_logs",
           params
         ]) do
      {:ok, {:ok, data, metadata}} ->
        emit.(render(data, metadata, opts))
        left = if polls == :infinity, do: :infinity, else: polls - 1

        if opts[:follow] && left != 0 do
          Process.sleep(opts[:interval_ms] || 1_000)
          loop(target, Map.put(params, "cursor", data.next_cursor), opts, emit, left)
        else
          {0, []}
        end

      {:ok, {:error, error, _metadata}} ->
        {1,
         "error (#{error.code}): #{error.message}\n" <>
           Enum.map_join(error.remediation, "", &"  -> #{&1}\n")}

      {:error, message} ->
        {1, message <> "\n"}
    end
  end

  defp render(data, _metadata, opts) do
    if opts[:json] do
      Enum.map(data.events, fn event ->
        {:ok, json} = ClusterScope.JSON.encode(event)
        [json, "\n"]
      end)
    else
      lines =
        Enum.map(data.events, fn e ->
          [
            e.time,
            " ",
            to_string(e.node),
            " ",
            String.pad_trailing(to_string(e.level), 8),
            " ",
            if(e.module, do: [e.module, " "], else: []),
            e.message,
            "\n"
          ]
        end)

      errors = Enum.map(data.node_errors, &"# #{&1.node} did not answer: #{&1.reason}\n")
      [lines, errors]
    end
  end
end
