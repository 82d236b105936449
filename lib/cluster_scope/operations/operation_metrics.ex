defmodule ClusterScope.Operations.OperationMetrics do
  @moduledoc """
  `GET /api/v1/metrics/operations`: the latency of every operation, merged
  across the cluster, and per node.

  Without `node`, asks this node and every connected (visible) node for its
  serialized latency histograms (`ClusterScope.Metrics.OperationLatency.serialized/1`,
  uncompressed V2 form) in one parallel fan-out, merges each operation's histograms from every
  node in the Rust core, and answers with count, p50, p90, p99, p99.9 and
  max in microseconds: `operations` for the whole cluster, `per_node` for
  each node that answered. With `node`, asks that node only.

  A node that does not answer within the node timeout is listed in
  `node_errors` (the response is then `partial`). A connected node that does
  not run ClusterScope (no code loaded there) is not an error: it is listed
  in `skipped_nodes`.

  Cost: one remote call per node, each serializing that node's histograms
  on a dirty scheduler (about 10 microseconds per operation); here, about
  40 microseconds per histogram to merge (dirty scheduler) and 150 to
  summarize each node's.
  """

  use ClusterScope.Operation, name: "operation_metrics", requires: [:native]

  alias ClusterScope.Fanout
  alias ClusterScope.Metrics.{Histogram, OperationLatency}
  alias ClusterScope.Simulator.Data, as: SimData

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/metrics/operations",
      summary: "Latency of every operation, merged across the cluster and per node",
      parameters: [
        %{
          name: :node,
          type: :node,
          required: false,
          location: :query,
          description: "ask only this node (default: this node and every connected node)"
        }
      ],
      responses: %{200 => %{description: "latency figures per operation, in microseconds"}}
    }
  end

  @impl true
  def execute(params) do
    nodes =
      case Map.get(params, :node) do
        nil -> [node() | Node.list()]
        node -> [node]
      end

    # The uncompressed V2 form: a few KiB more per operation on the wire,
    # but writing it costs each node ~10 us per operation instead of up to
    # ~700 us for the deflate encoder, and merging here is a third cheaper.
    # Simulated mode: virtual nodes' histograms come from the simulator.
    {answers, errors} =
      nodes
      |> Enum.reject(&ClusterScope.Simulator.virtual?/1)
      |> Fanout.multicall(OperationLatency, :serialized, [[compressed: false]])
      |> SimData.add_latency(Map.get(params, :node))

    {skipped, node_errors} = Enum.split_with(errors, &(&1.status == :not_running))
    answers = for {node, map} <- answers, is_map(map), do: {node, valid_entries(map)}

    per_node =
      Map.new(answers, fn {node, entries} ->
        {node,
         entries
         |> Enum.flat_map(fn {name, bin} -> summary(name, Histogram.deserialize(bin)) end)
         |> Enum.sort_by(& &1.name)}
      end)

    operations =
      answers
      |> Enum.flat_map(fn {_node, entries} -> entries end)
      |> Enum.group_by(fn {name, _} -> name end, fn {_, bin} -> bin end)
      |> Enum.flat_map(fn {name, bins} -> summary(name, Histogram.merge_serialized(bins)) end)
      |> Enum.sort_by(& &1.name)

    {:ok,
     SimData.mark(%{
       operations: operations,
       per_node: per_node,
       node_errors: node_errors,
       skipped_nodes: Enum.map(skipped, & &1.node)
     })}
  end

  # Only name => binary pairs from another node are used.
  defp valid_entries(map) do
    for {name, bin} <- map, is_binary(name) and is_binary(bin), do: {name, bin}
  end

  # A summary of a histogram rebuilt from another node's bytes, or nothing
  # when they do not decode.
  defp summary(name, {:ok, hist}) do
    case OperationLatency.summarize(name, hist) do
      {:ok, summary} -> [summary]
      _ -> []
    end
  end

  defp summary(_name, _error), do: []
end
