defmodule ClusterScope.Script.CLI do
  @moduledoc """
  `mix cluster_scope.run SCRIPT.exs [--node NODE --cookie COOKIE]`: runs a
  check script with `ClusterScope.Script` imported, prints each check as it
  completes and a summary. Exit status: 0 every check passed (at least one
  ran), 1 a check failed, 2 the script could not be read or raised outside
  a check.
  """

  @switches [node: :string, cookie: :string, help: :boolean]
  @usage "Usage: mix cluster_scope.run SCRIPT.exs [--node NODE --cookie COOKIE]\n"

  @doc "Runs the command; `emit` receives each line as it is ready."
  @spec main([String.t()], (iodata() -> any())) :: {0 | 1 | 2, iodata()}
  def main(argv, emit \\ &IO.write/1) do
    case OptionParser.parse(argv, strict: @switches, aliases: [h: :help]) do
      {opts, [path], []} ->
        if opts[:help], do: {0, @usage}, else: run(path, opts, emit)

      {opts, [], []} ->
        if opts[:help], do: {0, @usage}, else: {2, "A script is required.\n" <> @usage}

      {_, extra, []} ->
        {2, "One script at a time, got: #{Enum.join(extra, " ")}\n" <> @usage}

      {_, _, invalid} ->
        {2,
         "Unknown or malformed options: #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n" <> @usage}
    end
  end

  defp run(path, opts, emit) do
    with {:ok, source} <- read(path),
         {:ok, quoted} <- parse(source, path),
         {:ok, target} <- ClusterScope.CLI.connect(opts) do
      ClusterScope.Script.begin(target, emit)

      outcome =
        try do
          Code.eval_quoted({:__block__, [], [quote(do: import(ClusterScope.Script)), quoted]}, [],
            file: path
          )

          :ok
        rescue
          e -> {:raised, Exception.format(:error, e, __STACKTRACE__)}
        catch
          kind, value -> {:raised, Exception.format(kind, value, __STACKTRACE__)}
        end

      summarise(ClusterScope.Script.results(), outcome)
    else
      {:error, message} -> {2, message <> "\n"}
    end
  end

  defp read(path) do
    case File.read(path) do
      {:ok, source} -> {:ok, source}
      {:error, reason} -> {:error, "Cannot read #{path}: #{:file.format_error(reason)}"}
    end
  end

  defp parse(source, path) do
    case Code.string_to_quoted(source, file: path) do
      {:ok, quoted} ->
        {:ok, quoted}

      {:error, {meta, message, token}} ->
        {:error, "#{path}:#{meta[:line]}: #{inspect(message)} #{token}"}
    end
  end

  defp summarise(results, outcome) do
    failed = Enum.count(results, &(elem(&1, 0) == :fail))
    summary = "#{length(results) - failed}/#{length(results)} checks passed\n"

    case outcome do
      {:raised, text} -> {2, ["the script raised outside a check:\n", text, "\n", summary]}
      :ok when results == [] -> {2, "the script made no checks\n"}
      :ok when failed > 0 -> {1, summary}
      :ok -> {0, summary}
    end
  end
end
