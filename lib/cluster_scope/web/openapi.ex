defmodule ClusterScope.Web.OpenAPI do
  @moduledoc """
  The OpenAPI 3.0 document of the HTTP API, generated from the operation
  registry: each operation's `rest_config` gives its path, parameters, body
  schema and responses. Served at `GET /api/openapi.json`.

  When several versions are served on one method and path, the document
  describes the latest and lists the others in `x-versions` (select one with
  the `Accept-Version` header).

  Each operation carries ClusterScope's own facts as extensions: `x-scope`
  (the authority it needs), `x-partition-policy` (`anywhere`, `majority`,
  `all_nodes`: see `ClusterScope.Operation`) and `x-idempotent`.
  """

  alias ClusterScope.Operation.Registry

  @doc """
  Builds the document. Options: `:read_only` (leave mutating operations out,
  as the endpoint does).
  """
  @spec document(keyword()) :: map()
  def document(opts \\ []) do
    read_only = Keyword.get(opts, :read_only, false)

    routes =
      Registry.list()
      |> Enum.reject(fn {meta, _} -> read_only and meta.scope == :control end)
      |> Enum.group_by(fn {meta, _} -> {meta.path, meta.method} end)

    paths =
      Enum.reduce(routes, %{}, fn {{path, method}, versions}, acc ->
        {meta, availability} = Enum.max_by(versions, fn {m, _} -> m.version end)
        others = for {m, _} <- versions, m.version != meta.version, do: m.version

        Map.update(
          acc,
          openapi_path(path),
          %{method_key(method) => operation(meta, availability, others)},
          &Map.put(&1, method_key(method), operation(meta, availability, others))
        )
      end)

    %{
      "openapi" => "3.0.3",
      "info" => %{
        "title" => "ClusterScope",
        "version" => ClusterScope.version(),
        "description" => "Debugging and monitoring of a whole BEAM cluster."
      },
      "paths" => Map.put(paths, ClusterScope.Web.Stream.path(), stream_path()),
      "components" => %{
        "securitySchemes" => %{"bearerAuth" => %{"type" => "http", "scheme" => "bearer"}},
        "schemas" => %{"Error" => error_schema(), "Metadata" => metadata_schema()}
      }
    }
  end

  # The live stream is served by the endpoint, not by an operation.
  defp stream_path do
    %{
      "get" => %{
        "operationId" => "stream",
        "summary" => "Live events as Server-Sent Events (cluster, alerts, trace:<id>)",
        "description" =>
          "Frames `id: <cursor>`, `event: cluster|alert|trace|heartbeat`, `data: <JSON>` " <>
            "(the item of cluster_events, cluster_alerts, get_trace_events). Resume with " <>
            "`Last-Event-ID` or `last_event_id`. Read scope; trace topics need the admin token.",
        "parameters" => [
          %{
            "name" => "topics",
            "in" => "query",
            "required" => false,
            "description" =>
              "comma-separated: cluster, alerts, trace:<session id> (default cluster,alerts)",
            "schema" => %{"type" => "string"}
          },
          %{
            "name" => "last_event_id",
            "in" => "query",
            "required" => false,
            "description" => "the id of the last frame received (or the Last-Event-ID header)",
            "schema" => %{"type" => "string"}
          }
        ],
        "security" => [%{}, %{"bearerAuth" => []}],
        "responses" => %{
          "200" => %{
            "description" => "the event stream",
            "content" => %{"text/event-stream" => %{"schema" => %{"type" => "string"}}}
          },
          "400" => %{"description" => "a bad topic or cursor"},
          "401" => %{"description" => "a trace topic without the admin token"},
          "429" => %{"description" => "too many streams for this client"}
        }
      }
    }
  end

  defp operation(meta, availability, other_versions) do
    {body, others} = Enum.split_with(meta.parameters, &(Map.get(&1, :location) == :body))

    description =
      case availability do
        :ok -> meta.summary
        {:error, reason} -> "#{meta.summary} (unavailable on this node: #{reason})"
      end

    %{
      "operationId" => "#{meta.name}_v#{meta.version}",
      "summary" => meta.summary,
      "description" => description,
      "parameters" => Enum.map(others, &parameter/1),
      "responses" => responses(meta),
      "x-version" => meta.version
    }
    |> put_if(body != [], "requestBody", request_body(body))
    |> Map.put("x-scope", Atom.to_string(meta.scope))
    |> Map.put("x-partition-policy", Atom.to_string(Map.get(meta, :partition, :anywhere)))
    |> Map.put("x-idempotent", Map.get(meta, :idempotent, not meta.mutating))
    |> put_if(meta.scope != :read, "security", [%{"bearerAuth" => []}])
    |> put_if(other_versions != [], "x-versions", Enum.sort(other_versions))
  end

  defp parameter(spec) do
    location = Map.get(spec, :location, :query)

    %{
      "name" => Atom.to_string(spec.name),
      "in" => Atom.to_string(location),
      "required" => location == :path or Map.get(spec, :required, false),
      "description" => Map.get(spec, :description, ""),
      "schema" => schema(spec)
    }
  end

  defp request_body(specs) do
    required = for s <- specs, Map.get(s, :required, false), do: Atom.to_string(s.name)

    object =
      %{
        "type" => "object",
        "properties" => Map.new(specs, &{Atom.to_string(&1.name), schema(&1)})
      }
      |> put_if(required != [], "required", required)

    %{"required" => required != [], "content" => %{"application/json" => %{"schema" => object}}}
  end

  defp responses(meta) do
    declared =
      Map.new(meta.responses, fn {status, response} ->
        {to_string(status),
         %{
           "description" => Map.get(response, :description, ""),
           "content" => %{
             "application/json" => %{
               "schema" => %{
                 "type" => "object",
                 "properties" => %{
                   "data" => %{"type" => "object"},
                   "metadata" => %{"$ref" => "#/components/schemas/Metadata"}
                 }
               }
             }
           }
         }}
      end)

    error = %{
      "description" => "an error envelope",
      "content" => %{
        "application/json" => %{
          "schema" => %{
            "type" => "object",
            "properties" => %{
              "error" => %{"$ref" => "#/components/schemas/Error"},
              "metadata" => %{"$ref" => "#/components/schemas/Metadata"}
            }
          }
        }
      }
    }

    errors =
      [{"400", error}, {"404", error}, {"503", error}, {"504", error}] ++
        [{"401", error}, {"403", error}, {"421", error}, {"429", error}]

    Map.merge(Map.new(errors), declared)
  end

  defp schema(%{type: :string} = s),
    do:
      %{"type" => "string"}
      |> bounds(s, :min_length, "minLength")
      |> bounds(s, :max_length, "maxLength")
      |> default(s)

  defp schema(%{type: :integer} = s),
    do:
      %{"type" => "integer"}
      |> bounds(s, :min, "minimum")
      |> bounds(s, :max, "maximum")
      |> default(s)

  defp schema(%{type: :float} = s),
    do:
      %{"type" => "number"}
      |> bounds(s, :min, "minimum")
      |> bounds(s, :max, "maximum")
      |> default(s)

  defp schema(%{type: :boolean} = s), do: default(%{"type" => "boolean"}, s)
  defp schema(%{type: :map}), do: %{"type" => "object"}
  defp schema(%{type: :json}), do: %{"description" => "any JSON value"}

  defp schema(%{type: :array} = s) do
    %{"type" => "array", "items" => schema(%{type: Map.get(s, :items, :string)})}
    |> bounds(s, :min_length, "minItems")
    |> bounds(s, :max_length, "maxItems")
  end

  defp schema(%{type: :enum, values: values} = s),
    do: default(%{"type" => "string", "enum" => Enum.map(values, &to_string/1)}, s)

  defp schema(%{type: :node}),
    do: %{"type" => "string", "description" => "a node name, e.g. app@10.0.0.5"}

  defp schema(%{type: :pid}),
    do: %{
      "type" => "string",
      "description" => "a process id, \"0.ID.SERIAL@node\"",
      "pattern" => "^(#PID)?<?0\\.[0-9]+\\.[0-9]+>?(@.+)?$"
    }

  defp bounds(schema, spec, key, name) do
    case Map.fetch(spec, key) do
      {:ok, v} -> Map.put(schema, name, v)
      :error -> schema
    end
  end

  defp default(schema, spec) do
    case Map.fetch(spec, :default) do
      {:ok, v} when is_atom(v) and v not in [nil, true, false] ->
        Map.put(schema, "default", Atom.to_string(v))

      {:ok, v} when not is_nil(v) ->
        Map.put(schema, "default", v)

      _ ->
        schema
    end
  end

  defp error_schema do
    %{
      "type" => "object",
      "required" => ["code", "message"],
      "properties" => %{
        "code" => %{
          "type" => "string",
          "enum" => Enum.map(ClusterScope.Error.codes(), &Atom.to_string/1)
        },
        "message" => %{"type" => "string"},
        "details" => %{"type" => "object"},
        "cluster" => %{"type" => "object"},
        "remediation" => %{"type" => "array", "items" => %{"type" => "string"}}
      }
    }
  end

  defp metadata_schema do
    %{
      "type" => "object",
      "properties" => %{
        "operation" => %{"type" => "string", "nullable" => true},
        "version" => %{"type" => "integer", "nullable" => true},
        "node" => %{"type" => "string"},
        "duration_us" => %{"type" => "integer"},
        "partial" => %{"type" => "boolean"},
        "node_errors" => %{"type" => "array", "items" => %{"type" => "object"}},
        "nodes_answered" => %{"type" => "array", "items" => %{"type" => "string"}},
        "partition" => %{
          "type" => "object",
          "description" =>
            "present when the partition policy refused the run or force_partition ran it " <>
              "anyway (forced: true): policy, status, side, component, unreachable"
        }
      }
    }
  end

  defp openapi_path(path) do
    path
    |> String.split("/")
    |> Enum.map_join("/", fn
      ":" <> name -> "{#{name}}"
      segment -> segment
    end)
  end

  defp method_key(method), do: Atom.to_string(method)

  defp put_if(map, true, key, value), do: Map.put(map, key, value)
  defp put_if(map, false, _key, _value), do: map
end
