defmodule ClusterScope.Health.CLI do
  @moduledoc """
  The health probe behind `mix cluster_scope.health`:

      mix cluster_scope.health [--node NODE --cookie COOKIE] [--json]

  Runs the `cluster_health` operation (here, or on `--node`, connected to as
  a hidden node through `ClusterScope.CLI.connect/1`) and prints the
  cluster's status, each node's resources and the active alerts, or with
  `--json` the operation's data and metadata.

  `main/1` returns `{exit_code, output}`. Exit codes (those of Nagios-style
  probes):

    * `0` - healthy
    * `1` - degraded: a warning alert, a connectivity problem (a node down
      within its grace period included; a departed one is not), or a node
      that did not answer
    * `2` - critical: a critical alert, or this node is on the minority side
      of a split
    * `3` - unknown: a usage error, or the health could not be read (the node
      cannot be reached, ClusterScope does not run there)
  """

  @switches [node: :string, cookie: :string, json: :boolean, help: :boolean]
  @usage "Usage: mix cluster_scope.health [--node NODE --cookie COOKIE] [--json]\n"
  @codes %{healthy: 0, degraded: 1, critical: 2}
  @help """

  Prints the cluster's health: connectivity, each node's resources and the
  active alerts (--json: the cluster_health operation's data and metadata).

  Exit status: 0 healthy, 1 degraded (warnings), 2 critical, 3 unknown.
  """

  @doc "Runs the probe on `argv`; returns the exit code and the output."
  @spec main([String.t()]) :: {0 | 1 | 2 | 3, iodata()}
  def main(argv) do
    case OptionParser.parse(argv, strict: @switches, aliases: [h: :help]) do
      {opts, [], []} ->
        if opts[:help], do: {0, [@usage, @help]}, else: probe(opts)

      {_, extra, []} ->
        {3, "Unexpected arguments: #{Enum.join(extra, " ")}\n" <> @usage}

      {_, _, invalid} ->
        {3,
         "Unknown or malformed options: #{Enum.map_join(invalid, ", ", &elem(&1, 0))}\n" <> @usage}
    end
  end

  defp probe(opts) do
    with {:ok, target} <- ClusterScope.CLI.connect(opts),
         {:ok, answer} <-
           ClusterScope.CLI.remote(target, ClusterScope.Operation.Runner, :run, [
             "cluster_health",
             %{}
           ]) do
      case answer do
        {:ok, data, metadata} ->
          code = Map.get(@codes, data.status, 3)
          {code, output(%{data: data, metadata: metadata}, opts, &render/1)}

        {:error, error, metadata} ->
          {3,
           output(%{error: ClusterScope.Error.to_map(error), metadata: metadata}, opts, fn _ ->
             "UNKNOWN: cluster_health failed (#{error.code}): #{error.message}\n"
           end)}
      end
    else
      {:error, message} -> {3, "UNKNOWN: " <> message <> "\n"}
    end
  end

  defp output(payload, opts, render) do
    if opts[:json] do
      case ClusterScope.JSON.encode(payload) do
        {:ok, json} -> [json, "\n"]
        {:error, reason} -> ["could not encode JSON: #{inspect(reason)}\n"]
      end
    else
      render.(payload)
    end
  end

  # -- text --------------------------------------------------------------------------

  defp render(%{data: d, metadata: meta}) do
    [
      "Cluster health: #{d.status |> Atom.to_string() |> String.upcase()} ",
      "(seen from #{meta.node}; connectivity #{d.connectivity_status}, ",
      "worst alert #{d.worst_alert_severity || "none"})\n",
      "Connectivity: #{d.connectivity[:description] || d.connectivity.status}; ",
      "#{d.node_count} known node(s): ",
      Enum.map_join(Enum.sort(d.nodes_by_status), ", ", fn {s, n} -> "#{n} #{s}" end),
      "\n\n",
      nodes_table(d.per_node),
      alerts(d.alerts),
      node_errors(d.node_errors)
    ]
  end

  defp nodes_table(per_node) when map_size(per_node) == 0, do: "No node answered.\n"

  defp nodes_table(per_node) do
    header = [
      "node",
      "status",
      "memory",
      "processes",
      "run queue",
      "sched util",
      "max mqueue",
      "alerts",
      "monitor"
    ]

    rows =
      for {node, h} <- Enum.sort_by(per_node, &elem(&1, 0)) do
        s = h.summary || %{}

        [
          Atom.to_string(node),
          Atom.to_string(h.status),
          bytes(s[:memory_total_bytes]),
          value(s[:process_count]),
          value(s[:run_queue]),
          pct(s[:scheduler_utilization_pct]),
          value(s[:max_message_queue_len]),
          Integer.to_string(length(h.alerts)),
          if(h.throttled, do: "throttled (#{h.interval_ms} ms)", else: "#{h.interval_ms} ms")
        ]
      end

    table(header, rows)
  end

  defp alerts([]), do: "\nNo active alerts.\n"

  defp alerts(alerts) do
    [
      "\nActive alerts:\n"
      | Enum.map(alerts, fn a ->
          [
            "  [#{a.severity}] #{a.node} #{a.metric} = #{a.value} (threshold #{a.threshold})\n",
            "    #{a.message}\n",
            Enum.map(a.remediation, &"    -> #{&1}\n")
          ]
        end)
    ]
  end

  defp node_errors([]), do: []

  defp node_errors(errors) do
    ["\nNodes that did not answer:\n" | Enum.map(errors, &"  #{&1.node}: #{&1.reason}\n")]
  end

  defp value(nil), do: "-"
  defp value(v), do: to_string(v)

  defp pct(nil), do: "-"
  defp pct(v), do: "#{v}%"

  defp bytes(nil), do: "-"
  defp bytes(n) when n >= 1_073_741_824, do: "#{Float.round(n / 1_073_741_824, 2)} GiB"
  defp bytes(n), do: "#{Float.round(n / 1_048_576, 1)} MiB"

  defp table(header, rows) do
    widths =
      Enum.reduce([header | rows], List.duplicate(0, length(header)), fn row, widths ->
        Enum.zip_with(row, widths, fn cell, w -> max(String.length(cell), w) end)
      end)

    line = fn row ->
      [
        row
        |> Enum.zip_with(widths, &String.pad_trailing/2)
        |> Enum.join("  ")
        |> String.trim_trailing(),
        "\n"
      ]
    end

    [line.(header), Enum.map(rows, line)]
  end
end
