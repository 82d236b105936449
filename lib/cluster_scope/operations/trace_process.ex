defmodule ClusterScope.Operations.TraceProcess do
  @moduledoc """
  `POST /api/v1/trace/sessions`: starts a trace session: a process anywhere
  in the cluster, a function pattern on some or all nodes, or the messages a
  process sends and receives, within a duration, an event count, a rate per
  node, an optional per-process rate, a mailbox bound and an overhead
  ceiling (see `ClusterScope.Trace.Spec` for the defaults and for what is
  refused unless `force`).

  The session belongs to ClusterScope on this node and ends at its duration
  or event count, or by `DELETE /api/v1/trace/sessions/:id`; on a node that
  goes away it ends there. Cost: see `ClusterScope.Trace.Tracer`. Mutating:
  needs the token over HTTP.
  """

  # Anywhere: tracing changes no application state (throttled, bounded),
  # and each side of a partition must keep its own debugging.
  use ClusterScope.Operation,
    name: "trace_process",
    timeout: 30_000,
    partition: :anywhere,
    idempotent: false

  alias ClusterScope.Trace

  @impl true
  def rest_config do
    %{
      method: :post,
      path: "/api/v1/trace/sessions",
      summary: "Start a throttled trace session on one or several nodes",
      parameters: [
        %{name: :process, type: :pid, location: :body, description: "the process to trace"},
        %{
          name: :name,
          type: :string,
          max_length: 255,
          location: :body,
          description: "a registered name"
        },
        %{
          name: :horde_name,
          type: :string,
          max_length: 255,
          location: :body,
          description: "a Horde.Registry key (with horde_registry)"
        },
        %{
          name: :horde_registry,
          type: :string,
          max_length: 255,
          location: :body,
          description: "the Horde.Registry of horde_name"
        },
        %{
          name: :nodes,
          type: :array,
          items: :node,
          max_length: 64,
          location: :body,
          description: "nodes for a name or a function pattern (default: all)"
        },
        %{
          name: :module,
          type: :string,
          max_length: 255,
          location: :body,
          description: "module of the function pattern"
        },
        %{
          name: :function,
          type: :string,
          max_length: 255,
          location: :body,
          description: "function name, or _ for any"
        },
        %{
          name: :arity,
          type: :string,
          max_length: 3,
          location: :body,
          description: "arity, or _ for any"
        },
        %{
          name: :return,
          type: :boolean,
          default: false,
          location: :body,
          description: "also trace return values and exceptions"
        },
        %{
          name: :match_spec,
          type: :json,
          location: :body,
          description: "a trace match spec, JSON in the $atom/$tuple mapping"
        },
        %{
          name: :messages,
          type: :enum,
          values: [:send, :receive, :both],
          location: :body,
          description: "trace the process's messages"
        },
        %{
          name: :duration_ms,
          type: :integer,
          min: 100,
          max: 600_000,
          default: 10_000,
          location: :body,
          description: "the session ends after this"
        },
        %{
          name: :max_events,
          type: :integer,
          min: 1,
          max: 1_000_000,
          default: 1_000,
          location: :body,
          description: "the session ends after keeping this many events per node"
        },
        %{
          name: :rate,
          type: :integer,
          min: 1,
          max: 100_000,
          default: 200,
          location: :body,
          description: "events kept per second per node"
        },
        %{
          name: :per_process_rate,
          type: :integer,
          min: 1,
          max: 100_000,
          location: :body,
          description: "events kept per second per traced process"
        },
        %{
          name: :max_queue,
          type: :integer,
          min: 10,
          max: 1_000_000,
          default: 5_000,
          location: :body,
          description: "the tracer's mailbox bound: past it the session stops"
        },
        %{
          name: :overhead_ceiling,
          type: :float,
          min: 0.001,
          max: 1.0,
          default: 0.05,
          location: :body,
          description: "share of one scheduler the tracing may cost; the rate is lowered past it"
        },
        %{
          name: :force,
          type: :boolean,
          default: false,
          location: :body,
          description: "allow hot modules with wildcards and ClusterScope's own"
        }
      ],
      responses: %{200 => %{description: "the session"}}
    }
  end

  @impl true
  def execute(params), do: Trace.start(params, owner: nil)
end
