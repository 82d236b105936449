defmodule ClusterScope.Operations.HordeRegistryInspect do
  @moduledoc """
  `GET /api/v1/horde/registries`: the `Horde.Registry`s of the cluster and
  their entries.

  Without `registry`: every Horde registry running on this node (found from
  its processes, `ClusterScope.Horde.Discovery`) with its members, its
  number of entries and entries per node, and, for every node that runs
  ClusterScope and is up, whether its replica agrees (count and digest of
  `{key, pid}` pairs: `replica_disagreements`), whose members differ
  (`membership_disagreements`) and where a registry does not run
  (`missing_on`).

  With `registry` (its name as Elixir writes it, `MyApp.Registry` or
  `:my_registry`; an unknown name is a 404 listing the known ones, and no
  atom is ever made from it): also a page of its entries - key, pid, node,
  value - filtered by the pid's `node` and by `key_contains` (a substring of
  the key as Elixir prints it), ordered by that text, `limit` per page from
  `offset`, with `total` and the counts per node of the matching entries.

  A registry's keys and values are the host's data (session ids, connection
  options, credentials), like a process's state: the operation has the
  `:sensitive` scope (the admin token over HTTP, `authorize/2` through
  Arsenal), and every key and value is redacted with this node's rules
  (`ClusterScope.Secrets`: the cookies, the endpoint's tokens, values under
  `redact_keys`) **before** it is printed, matched by `key_contains` or
  turned into JSON - once turned into JSON a keyword list is a list of
  `{"$tuple": [...]}` objects whose keys the answer's redaction can no
  longer recognise, and a filter on the raw text would let a client guess
  a secret one character at a time.

  Cost: entries come from this node's replica (`Horde.Registry.select/2`:
  an ETS read of every entry, no process is called, proportional to the
  entries of the cluster); one local view per up node through
  `ClusterScope.Fanout`. Each Horde read runs in a process of its own with
  a deadline (`ClusterScope.Horde.Call`). Requires Horde: without it the
  operation is listed as unavailable and answers 503.
  """

  use ClusterScope.Operation,
    name: "horde_registry_inspect",
    requires: [:horde],
    scope: :sensitive

  alias ClusterScope.Horde.{Discovery, Findings, Inspect}
  alias ClusterScope.Procs.Terms

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/horde/registries",
      summary: "Horde registries: members, counts per node, replicas compared, entries",
      parameters: [
        %{
          name: :registry,
          type: :string,
          max_length: 255,
          location: :query,
          description: "a registry's name (MyApp.Registry or :my_registry) to list its entries"
        },
        %{
          name: :node,
          type: :node,
          location: :query,
          description: "only entries whose process runs on this node"
        },
        %{
          name: :key_contains,
          type: :string,
          max_length: 200,
          location: :query,
          description: "only entries whose key, as Elixir prints it, contains this text"
        },
        %{
          name: :limit,
          type: :integer,
          min: 1,
          max: 1000,
          default: 100,
          location: :query,
          description: "entries per page"
        },
        %{
          name: :offset,
          type: :integer,
          min: 0,
          max: 10_000_000,
          default: 0,
          location: :query,
          description: "entries to skip (next_offset of the previous page)"
        }
      ],
      responses: %{200 => %{description: "registries, or one registry's entries"}}
    }
  end

  @doc false
  def check_params(params) do
    if params[:registry] == nil and (params[:node] || params[:key_contains]),
      do: {:error, [%{field: "registry", message: "is required with node or key_contains"}]},
      else: {:ok, params}
  end

  @impl true
  def execute(%{registry: text} = params) when is_binary(text) do
    with {:ok, name} <- Inspect.resolve_name(:registry, text),
         {:ok, view} <- Inspect.view(:registry, name, entries: true) do
      {summaries, node_errors} = Inspect.fan(:local_summary, [])
      compared = Findings.compare(summaries)

      rules = ClusterScope.Secrets.rules()

      matching =
        view.entries
        |> Enum.filter(fn {_k, pid, _v} -> params[:node] == nil or node(pid) == params.node end)
        |> Enum.map(fn {k, pid, v} ->
          k = ClusterScope.Redact.term(k, rules)
          {inspect(k, limit: 20, printable_limit: 200), k, pid, v}
        end)
        |> Enum.filter(fn {text, _k, _pid, _v} ->
          params[:key_contains] == nil or String.contains?(text, params.key_contains)
        end)
        |> Enum.sort_by(&elem(&1, 0))

      page = matching |> Enum.drop(params.offset) |> Enum.take(params.limit)
      next = params.offset + length(page)

      {:ok,
       %{
         registry: name,
         members: Findings.registry(Map.delete(view, :entries), Inspect.up_nodes()).members,
         count: view.count,
         per_node: view.per_node,
         total: length(matching),
         matching_per_node: Enum.frequencies_by(matching, fn {_, _, pid, _} -> node(pid) end),
         entries:
           for {text, k, pid, v} <- page do
             %{
               key: Terms.to_json(k),
               key_text: text,
               pid: ClusterScope.ProcessRef.to_string(pid),
               node: node(pid),
               value: v |> ClusterScope.Redact.term(rules) |> Terms.to_json()
             }
           end,
         next_offset: if(next < length(matching), do: next),
         replica_disagreements: Enum.filter(compared.replica_disagreements, &(&1.name == name)),
         membership_disagreements:
           Enum.filter(compared.membership_disagreements, &(&1.name == name)),
         node_errors: node_errors
       }}
    end
  end

  def execute(_params) do
    found = Discovery.local()

    registries =
      for name <- found.registries do
        case Inspect.view(:registry, name) do
          {:ok, view} -> Findings.registry(view, Inspect.up_nodes()) |> Map.delete(:digest)
          {:error, {_, text}} -> %{name: name, error: text}
        end
      end

    {summaries, node_errors} = Inspect.fan(:local_summary, [])
    compared = Findings.compare(summaries)

    {:ok,
     %{
       registries: registries,
       replica_disagreements: compared.replica_disagreements,
       membership_disagreements:
         Enum.filter(compared.membership_disagreements, &(&1.kind == :registry)),
       missing_on: Enum.filter(compared.missing_on, &(&1.kind == :registry)),
       node_errors: node_errors
     }}
  end
end
