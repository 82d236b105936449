defmodule ClusterScope.CLI.Batch do
  @moduledoc """
  One operation run on several nodes for the CLI's `--nodes a,b` and
  `--all`: each node runs it through its own runner (so each answers from
  its own point of view), in parallel, each bounded by the operation's
  deadline. Runs on the node the CLI is attached to.

  An operation with a `node` parameter that the command line left out gets
  each node's own name there (`node_resources --all` asks every node about
  itself).
  """

  alias ClusterScope.Operation.{Registry, Runner}

  @typedoc "One node's answer."
  @type answer ::
          {node(),
           {:ok, term(), map()} | {:error, ClusterScope.Error.t(), map()} | {:error, String.t()}}

  @doc """
  Runs operation `name` (at `version`) with `params` on `selector`: `:all`
  (every node running ClusterScope) or node names as text. Node names are
  matched against known nodes, never made into atoms.
  """
  @spec run(String.t(), map(), pos_integer() | :latest, :all | [String.t()]) ::
          {:ok, [answer()]} | {:error, String.t()}
  def run(name, params, version, selector) do
    with {:ok, meta} <- lookup(name, version),
         {:ok, nodes} <- resolve(selector) do
      timeout = (meta.timeout || ClusterScope.Config.get(:node_timeout_ms)) + 2_000

      answers =
        nodes
        |> Task.async_stream(&{&1, call(&1, meta, params, timeout)},
          max_concurrency: 64,
          timeout: timeout + 1_000,
          on_timeout: :kill_task,
          ordered: true
        )
        |> Enum.zip(nodes)
        |> Enum.map(fn
          {{:ok, answer}, _node} -> answer
          {{:exit, _}, node} -> {node, {:error, "no answer within #{timeout} ms"}}
        end)

      {:ok, answers}
    end
  end

  defp lookup(name, version) do
    case Registry.lookup(name, version) do
      {:ok, meta} -> {:ok, meta}
      {:error, :not_found} -> {:error, "Unknown operation #{inspect(name)}"}
    end
  end

  defp resolve(:all),
    do: {:ok, Enum.sort(Enum.uniq([node() | ClusterScope.Cluster.Heartbeat.agent_nodes()]))}

  defp resolve(names) when is_list(names) do
    known =
      Enum.uniq(
        [node() | Node.list([:visible, :hidden])] ++ ClusterScope.Cluster.Heartbeat.agent_nodes()
      )

    by_name = Map.new(known, &{Atom.to_string(&1), &1})

    case Enum.reject(names, &Map.has_key?(by_name, &1)) do
      [] -> {:ok, names |> Enum.uniq() |> Enum.map(&Map.fetch!(by_name, &1))}
      unknown -> {:error, "Unknown or unconnected node(s): #{Enum.join(unknown, ", ")}"}
    end
  end

  defp call(node, meta, params, timeout) do
    args = [meta.name, with_node(meta, params, node), [version: meta.version]]

    if node == node() do
      apply(Runner, :run, args)
    else
      case ClusterScope.Fanout.call(node, Runner, :run, args, timeout) do
        {:ok, answer} -> answer
        {:error, error} -> {:error, "#{node} did not answer: #{error.reason}"}
      end
    end
  end

  defp with_node(meta, params, node) do
    declares_node? = Enum.any?(meta.parameters, &(&1.name == :node and &1.type == :node))
    given? = Map.has_key?(params, "node") or Map.has_key?(params, :node)

    if declares_node? and not given?,
      do: Map.put(params, "node", Atom.to_string(node)),
      else: params
  end
end
