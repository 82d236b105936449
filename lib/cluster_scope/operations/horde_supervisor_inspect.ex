defmodule ClusterScope.Operations.HordeSupervisorInspect do
  @moduledoc """
  `GET /api/v1/horde/supervisors`: the `Horde.DynamicSupervisor`s of the
  cluster, their members, children and findings.

  Without `supervisor`: every Horde supervisor running on this node with
  its distribution strategy, members and their status (`alive`,
  `uninitialized` - a visible node where it does not run -, `shutting_down`,
  `dead`), children per node, skew over live members, duplicates, lost
  children and members not connected (see `ClusterScope.Horde.Findings`).

  With `supervisor` (`MyApp.Supervisor` or `:my_sup`; an unknown name is a
  404 listing the known ones, and no atom is ever made from it): also the
  children as recorded by Horde (pid, node, start function), filtered by
  `node`, paged by `limit`/`offset`, and each up node's own count of the
  children running there (`running_per_node`), with the duplicates each
  node sees (`per_node_findings`). Members that are not up or not
  connected, or do not run ClusterScope, are in `node_errors` (not called);
  connected nodes where the supervisor does not run are left out.

  Cost: one read of this node's supervisor state and records, one of each
  up node's through `ClusterScope.Fanout`; never
  `Horde.DynamicSupervisor.which_children/1` (it makes the supervisor call
  every member with no timeout and freezes it while a member is frozen).
  Every Horde read runs in a process of its own with a deadline. Requires
  Horde: without it the operation is listed as unavailable and answers 503.
  """

  use ClusterScope.Operation, name: "horde_supervisor_inspect", requires: [:horde]

  alias ClusterScope.Horde.{Discovery, Findings, Inspect}

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/horde/supervisors",
      summary: "Horde supervisors: members and status, children per node, skew, duplicates",
      parameters: [
        %{
          name: :supervisor,
          type: :string,
          max_length: 255,
          location: :query,
          description: "a supervisor's name (MyApp.Supervisor or :my_sup) to list its children"
        },
        %{
          name: :node,
          type: :node,
          location: :query,
          description: "only children running on this node"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1000,
          default: 100,
          location: :query,
          description: "children per page"
        },
        %{
          name: :offset,
          type: :integer,
          min: 0,
          max: 10_000_000,
          default: 0,
          location: :query,
          description: "children to skip (next_offset of the previous page)"
        }
      ],
      responses: %{200 => %{description: "supervisors, or one supervisor's children"}}
    }
  end

  @doc false
  def check_params(params) do
    if params[:supervisor] == nil and params[:node],
      do: {:error, [%{field: "supervisor", message: "is required with node"}]},
      else: {:ok, params}
  end

  @impl true
  def execute(%{supervisor: text} = params) when is_binary(text) do
    with {:ok, name} <- Inspect.resolve_name(:supervisor, text),
         {:ok, view} <- Inspect.view(:supervisor, name) do
      summary = Findings.supervisor(view, Inspect.up_nodes())
      member_nodes = for m <- summary.members, m.status != :uninitialized, do: m.node
      nodes = Enum.uniq([node() | Node.list(:visible)] ++ member_nodes)
      {answers, node_errors} = Inspect.fan(:local_supervisor_summary, [name], nodes)

      {per_node, refused} =
        Enum.reduce(answers, {%{}, []}, fn
          {_n, {:ok, nil}}, acc ->
            acc

          {n, {:ok, s}}, {acc, errs} ->
            {Map.put(acc, n, s), errs}

          {n, {:error, text}}, {acc, errs} ->
            {acc,
             [%{node: n, status: :error, reason: text, remediation: "See #{n}'s log."} | errs]}
        end)

      children =
        view.records
        |> Enum.filter(&(params[:node] == nil or node(&1.pid) == params.node))
        |> Enum.sort_by(
          &{&1.member_node, elem(&1.spec, 0), ClusterScope.ProcessRef.to_string(&1.pid)}
        )

      page = children |> Enum.drop(params.offset) |> Enum.take(params.limit)
      next = params.offset + length(page)

      {:ok,
       summary
       |> Map.merge(%{
         supervisor: name,
         running_per_node: Map.new(per_node, fn {n, s} -> {n, s.running_here} end),
         per_node_findings:
           Map.new(per_node, fn {n, s} ->
             {n, Map.take(s, [:duplicates, :running_here, :running_error])}
           end),
         total: length(children),
         children:
           for r <- page do
             %{
               pid: ClusterScope.ProcessRef.to_string(r.pid),
               node: node(r.pid),
               member_node: r.member_node,
               start: elem(r.spec, 0)
             }
           end,
         next_offset: if(next < length(children), do: next),
         node_errors: node_errors ++ Enum.reverse(refused)
       })}
    end
  end

  def execute(_params) do
    supervisors =
      for name <- Discovery.local().supervisors do
        case Inspect.view(:supervisor, name) do
          {:ok, view} -> Findings.supervisor(view, Inspect.up_nodes())
          {:error, {_, text}} -> %{name: name, error: text}
        end
      end

    {:ok, %{supervisors: supervisors, node_errors: []}}
  end
end
