defmodule ClusterScope.Operations.ProcessList do
  @moduledoc """
  `GET /api/v1/cluster/processes`: the processes of every node as one list,
  filtered, sorted and paged, each row with its node.

  Every node ranks its own processes in Rust and sends one page; this node
  merges the pages (principle 1: compute where the data is). Follow
  `next_cursor` for the next page: the cursor holds the last row's value
  and process, so a page never repeats or skips a process that kept its
  value. With `window_ms` the list ranks by change over that interval
  instead (reductions per second, memory growth or queue growth, by
  `sort_by`), like `recon:proc_window/3` for the whole cluster.
  `include_details` adds the merged summary (counts by status,
  application, type, initial call and module, histograms, totals).
  `sandbox` (an id or a name) lists only that sandbox's processes, on
  every node it runs on: each node reads just those processes (see
  `ClusterScope.Sandbox`); it is not combined with `window_ms` or
  `include_details`.

  Cost on each node: one walk of its processes (shared by callers for a
  second, see `ClusterScope.Agent.Processes.Snapshots`). Ranked by one field with
  no filter but the minimum on that field, the walk reads only that field
  of each process and then the page's processes whole
  (`ClusterScope.Agent.Processes.Ranked`); otherwise it reads every process whole.
  Two walks in window mode (three numbers of each process, then the
  winners whole, unless a filter needs full rows), shared by every
  concurrent window request on that node (N requests for a 30 s window
  cost one window). Nodes
  that do not answer within the node timeout are in `node_errors`.
  """

  use ClusterScope.Operation, name: "process_list", timeout: 75_000

  alias ClusterScope.Procs

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/cluster/processes",
      summary: "Processes of every node as one list: filter, sort, page, window",
      parameters:
        Procs.Params.filters() ++
          [
            %{
              name: :sort_by,
              type: :enum,
              values: Procs.sort_fields(),
              default: :memory,
              location: :query,
              description: "rank by this field, largest first"
            },
            %{
              name: :limit,
              type: :integer,
              min: 1,
              max: 1000,
              default: 50,
              location: :query,
              description: "rows per page"
            },
            %{
              name: :cursor,
              type: :string,
              max_length: 1000,
              location: :query,
              description: "next_cursor of the previous page"
            },
            %{
              name: :window_ms,
              type: :integer,
              min: 0,
              max: 30_000,
              location: :query,
              description: "rank by change over this interval (ms) instead of by value"
            },
            %{
              name: :sandbox,
              type: :string,
              max_length: 255,
              location: :query,
              description: "only the processes of this sandbox (id or name)"
            },
            %{
              name: :include_details,
              type: :boolean,
              default: false,
              location: :query,
              description: "add the merged summary of the matching processes"
            }
          ],
      responses: %{200 => %{description: "a page of processes, with next_cursor"}}
    }
  end

  def check_params(%{sandbox: s, window_ms: w}) when is_binary(s) and is_integer(w) and w > 0,
    do: {:error, [%{field: "sandbox", message: "cannot be combined with window_ms"}]}

  def check_params(%{sandbox: s, include_details: true}) when is_binary(s),
    do: {:error, [%{field: "sandbox", message: "cannot be combined with include_details"}]}

  def check_params(%{cursor: cursor} = params) when is_binary(cursor) do
    cond do
      (params[:window_ms] || 0) > 0 ->
        {:error, [%{field: "cursor", message: "cannot be combined with window_ms"}]}

      true ->
        case Procs.decode_cursor(cursor, params.sort_by) do
          {:ok, decoded} -> {:ok, %{params | cursor: decoded}}
          {:error, message} -> {:error, [%{field: "cursor", message: message}]}
        end
    end
  end

  def check_params(params), do: {:ok, params}

  @impl true
  def execute(params) do
    with {:ok, params} <- sandbox_id(params),
         {:ok, list} <- Procs.list(params) do
      # Simulated mode: virtual nodes' rows are in (see Procs), and marked.
      list = ClusterScope.Simulator.Data.mark(list)

      if params.include_details do
        case Procs.summary(params) do
          {:ok, %{summary: summary}} -> {:ok, Map.put(list, :summary, summary)}
          {:error, _} = error -> error
        end
      else
        {:ok, list}
      end
    end
  end

  # A sandbox named by id or name, resolved here once (the nodes filter by id).
  defp sandbox_id(%{sandbox: text} = params) when is_binary(text) do
    with {:ok, id} <- ClusterScope.Sandbox.id_of(text), do: {:ok, %{params | sandbox: id}}
  end

  defp sandbox_id(params), do: {:ok, params}
end
