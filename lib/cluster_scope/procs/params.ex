defmodule ClusterScope.Procs.Params do
  @moduledoc "The parameters shared by the process operations."

  @doc "The `:pid` path parameter of the operations on one process."
  @spec pid() :: map()
  def pid do
    %{
      name: :pid,
      type: :pid,
      required: true,
      location: :path,
      description: "the process, e.g. 0.123.0@node"
    }
  end

  @doc "The `:force` body parameter of the operations that refuse protected processes."
  @spec force() :: map()
  def force do
    %{
      name: :force,
      type: :boolean,
      default: false,
      location: :body,
      description:
        "reach protected processes (the runtime's, ClusterScope's); refused unless " <>
          "allow_dangerous_actions is true; never reaches init, auth, net_kernel, global, " <>
          "code_server or application_controller"
    }
  end

  @doc "Parameter declarations of the process filters."
  @spec filters() :: [map()]
  def filters do
    [
      %{name: :node, type: :node, location: :query, description: "only this node"},
      %{
        name: :application,
        type: :string,
        max_length: 255,
        location: :query,
        description: "owning application, e.g. kernel"
      },
      %{
        name: :type,
        type: :enum,
        values: ClusterScope.Procs.types(),
        location: :query,
        description: "process type"
      },
      %{
        name: :name,
        type: :string,
        max_length: 255,
        location: :query,
        description: "glob (* and ?) on registered name, initial call or current function"
      },
      %{
        name: :min_memory,
        type: :integer,
        min: 0,
        location: :query,
        description: "only processes using at least this many bytes"
      },
      %{
        name: :min_queue,
        type: :integer,
        min: 0,
        location: :query,
        description: "only processes with at least this many queued messages"
      },
      %{
        name: :max_age_ms,
        type: :integer,
        min: 0,
        max: 60_000,
        default: 1_000,
        location: :query,
        description: "reuse a node's process snapshot up to this age (0: collect now)"
      }
    ]
  end
end
