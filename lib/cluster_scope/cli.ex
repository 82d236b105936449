defmodule ClusterScope.CLI do
  @moduledoc """
  The command line of `mix cluster_scope.op`, built from operation metadata.

      mix cluster_scope.op --list
      mix cluster_scope.op NAME --help
      mix cluster_scope.op NAME [--PARAM VALUE ...] [--param NAME=VALUE ...] [--json]
      mix cluster_scope.op NAME ... --node app@host --cookie SECRET
      mix cluster_scope.op NAME ... --all | --nodes a@host,b@host

  Each parameter of an operation's `rest_config` is a flag (`window_ms` is
  `--window-ms`); `--param NAME=VALUE` works for any parameter, including
  those whose name is also a CLI flag (`node`, `cookie`, `json`, `help`,
  `list`). Array values are comma-separated, map values are JSON.

  With `--node` the CLI connects to that node as a hidden node (it does not
  join the cluster's full mesh) with `--cookie`, and runs the operation there.

  With `--all` (every node running ClusterScope) or `--nodes a,b` the
  operation runs on each of those nodes, in parallel (`ClusterScope.CLI.Batch`),
  and the CLI prints one row per node (`--json`: one object per node); the
  exit status is 0 when every node succeeded, 1 when one failed. An
  operation's own `nodes` parameter is then given as `--param nodes=a,b`.

  `main/1` returns `{exit_code, output}`: 0 on success, 1 when the operation
  fails, 2 on a usage error.
  """

  alias ClusterScope.Operation.Runner

  @cli_flags [
    list: :boolean,
    help: :boolean,
    json: :boolean,
    node: :string,
    cookie: :string,
    param: :keep,
    op_version: :integer,
    nodes: :string,
    all: :boolean
  ]
  @aliases [h: :help]
  @reserved Keyword.keys(@cli_flags)

  @doc """
  What a mix task needs before `main/1`: with `--node` only this project's
  code (the work happens on the target node), otherwise the application
  started here. Returns `:remote` or `:local`.
  """
  @spec prepare([String.t()]) :: :remote | :local
  def prepare(argv) do
    if "--node" in argv do
      Mix.Task.run("compile")
      Application.load(:cluster_scope)
      :remote
    else
      Mix.Task.run("app.start")
      :local
    end
  end

  @doc "Writes a CLI's output and exits with its code (mix tasks)."
  @spec finish({non_neg_integer(), iodata()}) :: :ok
  def finish({code, output}) do
    IO.write(output)
    if code != 0, do: exit({:shutdown, code})
    :ok
  end

  @doc "Runs the CLI on `argv` and returns the exit code and the output."
  @spec main([String.t()]) :: {0 | 1 | 2, iodata()}
  def main(argv) do
    {global, rest, _} =
      OptionParser.parse(argv,
        switches: @cli_flags,
        aliases: @aliases,
        allow_nonexistent_atoms: false
      )

    with {:ok, target} <- connect(global),
         {:ok, operations} <- remote(target, ClusterScope.Operation.Registry, :list, []) do
      dispatch(target, operations, argv, global, rest)
    else
      {:error, message} -> {2, message <> "\n"}
    end
  end

  defp dispatch(_target, operations, _argv, _global, []), do: {0, list(operations)}

  defp dispatch(target, operations, argv, _global, [name | _]) do
    case Enum.filter(operations, fn {meta, _} -> meta.name == name end) do
      [] ->
        {2, "Unknown operation #{inspect(name)}. `mix cluster_scope.op --list` lists them.\n"}

      versions ->
        run_operation(target, versions, argv)
    end
  end

  defp run_operation(target, versions, argv) do
    {meta, _} = Enum.max_by(versions, fn {m, _} -> m.version end)
    switches = op_switches(meta) ++ @cli_flags

    case OptionParser.parse(argv, strict: switches, aliases: @aliases) do
      {opts, [_name], []} ->
        {meta, availability} = pick_version(versions, opts[:op_version])

        if opts[:help] do
          {0, help(meta, availability)}
        else
          with {:ok, params} <- params(meta, opts) do
            case batch_selector(opts) do
              nil -> execute(target, meta, params, opts)
              selector -> execute_batch(target, meta, params, opts, selector)
            end
          end
        end

      {_, [_name | extra], []} when extra != [] ->
        {2, "Unexpected arguments: #{Enum.join(extra, " ")}\n" <> usage(meta)}

      {_, _, invalid} ->
        bad = Enum.map_join(invalid, ", ", fn {flag, _} -> flag end)
        {2, "Unknown or malformed options: #{bad}\n" <> usage(meta)}
    end
  end

  defp pick_version(versions, nil), do: Enum.max_by(versions, fn {m, _} -> m.version end)

  defp pick_version(versions, v) do
    Enum.find(versions, fn {m, _} -> m.version == v end) || pick_version(versions, nil)
  end

  defp execute(target, meta, params, opts) do
    case remote(target, Runner, :run, [meta.name, params, [version: meta.version]]) do
      {:ok, {:ok, data, metadata}} ->
        {0, output(%{data: data, metadata: metadata}, opts, &render_data/1)}

      {:ok, {:error, error, metadata}} ->
        {1,
         output(
           %{error: ClusterScope.Error.to_map(error), metadata: metadata},
           opts,
           &render_error/1
         )}

      {:error, message} ->
        {1, message <> "\n"}
    end
  end

  defp batch_selector(opts) do
    cond do
      opts[:all] -> :all
      opts[:nodes] -> String.split(opts[:nodes], ",", trim: true)
      true -> nil
    end
  end

  defp execute_batch(target, meta, params, opts, selector) do
    case remote(target, ClusterScope.CLI.Batch, :run, [meta.name, params, meta.version, selector]) do
      {:ok, {:ok, answers}} ->
        failed? = Enum.any?(answers, fn {_node, answer} -> not match?({:ok, _, _}, answer) end)
        {if(failed?, do: 1, else: 0), batch_output(answers, opts)}

      {:ok, {:error, message}} ->
        {2, message <> "\n"}

      {:error, message} ->
        {1, message <> "\n"}
    end
  end

  defp batch_output(answers, opts) do
    if opts[:json] do
      rows = Enum.map(answers, &batch_json/1)

      case ClusterScope.JSON.encode(rows) do
        {:ok, json} -> [json, "\n"]
        {:error, reason} -> ["could not encode JSON: #{inspect(reason)}\n"]
      end
    else
      rows =
        Enum.map(answers, fn {node, answer} ->
          case answer do
            {:ok, data, _meta} ->
              [to_string(node), "ok", summary(data)]

            {:error, %ClusterScope.Error{} = e, _} ->
              [to_string(node), "error", "#{e.code}: #{e.message}"]

            {:error, message} ->
              [to_string(node), "error", message]
          end
        end)

      ok = Enum.count(rows, &(Enum.at(&1, 1) == "ok"))
      [table(["node", "result", "answer"], rows), "\n#{ok}/#{length(rows)} nodes succeeded\n"]
    end
  end

  defp batch_json({node, {:ok, data, metadata}}),
    do: %{node: node, ok: true, data: data, metadata: metadata}

  defp batch_json({node, {:error, %ClusterScope.Error{} = e, metadata}}),
    do: %{node: node, ok: false, error: ClusterScope.Error.to_map(e), metadata: metadata}

  defp batch_json({node, {:error, message}}),
    do: %{node: node, ok: false, error: %{code: :node_unavailable, message: message}}

  # One line per node: the first scalar fields, and the size of lists.
  defp summary(data) when is_map(data) and not is_struct(data) do
    data
    |> Enum.sort_by(&to_string(elem(&1, 0)))
    |> Enum.flat_map(fn
      {k, v} when is_list(v) -> ["#{k}=[#{length(v)}]"]
      {_k, v} when is_map(v) -> []
      {k, v} -> ["#{k}=#{scalar(v)}"]
    end)
    |> Enum.take(6)
    |> Enum.join(" ")
    |> String.slice(0, 120)
  end

  defp summary(data), do: data |> scalar() |> IO.iodata_to_binary() |> String.slice(0, 120)

  # -- parameters --------------------------------------------------------------

  defp op_switches(meta) do
    for %{name: name} <- meta.parameters,
        name not in Keyword.keys(@cli_flags),
        do: {name, :string}
  end

  defp params(meta, opts) do
    declared = Map.new(meta.parameters, &{Atom.to_string(&1.name), &1})

    from_flags =
      for {key, value} <- opts, key not in Keyword.keys(@cli_flags), into: %{} do
        {Atom.to_string(key), value}
      end

    from_param =
      opts
      |> Keyword.get_values(:param)
      |> Enum.map(fn pair ->
        case String.split(pair, "=", parts: 2) do
          [name, value] -> {:ok, {String.replace(name, "-", "_"), value}}
          _ -> {:error, "--param takes NAME=VALUE, got #{inspect(pair)}"}
        end
      end)

    case Enum.find(from_param, &match?({:error, _}, &1)) do
      {:error, message} ->
        {2, message <> "\n"}

      nil ->
        params = Map.merge(from_flags, Map.new(from_param, fn {:ok, kv} -> kv end))
        decode_json_values(params, declared)
    end
  end

  defp decode_json_values(params, declared) do
    Enum.reduce_while(params, {:ok, %{}}, fn {name, value}, {:ok, acc} ->
      case declared[name] do
        %{type: :map} ->
          case ClusterScope.JSON.decode(value) do
            {:ok, decoded} -> {:cont, {:ok, Map.put(acc, name, decoded)}}
            _ -> {:halt, {2, "--#{name} must be a JSON object\n"}}
          end

        %{type: :json} when is_binary(value) ->
          case ClusterScope.JSON.decode(value) do
            {:ok, decoded} -> {:cont, {:ok, Map.put(acc, name, decoded)}}
            _ -> {:halt, {2, "--#{name} must be JSON\n"}}
          end

        _ ->
          {:cont, {:ok, Map.put(acc, name, value)}}
      end
    end)
  end

  # -- connection --------------------------------------------------------------

  @doc """
  The target of a command line: `:local` without `:node` in `opts`, else
  that node, connected to as a hidden node with `:cookie` (starting
  distribution here when needed). `{:ok, target}` or `{:error, message}`.
  Shared by the CLIs (`ClusterScope.Health.CLI`).
  """
  @spec connect(keyword()) :: {:ok, :local | node()} | {:error, String.t()}
  def connect(global) do
    case {global[:node], global[:cookie]} do
      {nil, _} ->
        {:ok, :local}

      {target, cookie} ->
        with {:ok, node} <- start_distribution(target) do
          if cookie, do: :erlang.set_cookie(node, String.to_atom(cookie))

          if :net_kernel.hidden_connect_node(node) == true do
            {:ok, node}
          else
            {:error,
             "Could not connect to #{target}: check the name, the cookie (--cookie) and that epmd and the node are reachable."}
          end
        end
    end
  end

  # The target's name is an atom we have to make: it comes from the operator's
  # own command line, once per run.
  defp start_distribution(target) do
    node = String.to_atom(target)

    cond do
      Node.alive?() ->
        {:ok, node}

      not String.contains?(target, "@") ->
        {:error, "--node must be name@host, got #{inspect(target)}"}

      true ->
        host = target |> String.split("@", parts: 2) |> List.last()
        domain = if String.contains?(host, "."), do: :longnames, else: :shortnames
        suffix = if domain == :longnames, do: "@127.0.0.1", else: ""
        ClusterScope.LocalCluster.ensure_epmd()

        case :net_kernel.start(String.to_atom("cluster_scope_cli_#{System.pid()}#{suffix}"), %{
               name_domain: domain
             }) do
          {:ok, _} -> {:ok, node}
          {:error, reason} -> {:error, "Could not start distribution: #{inspect(reason)}"}
        end
    end
  end

  @doc """
  Calls `m.f(a)` on a target of `connect/1` (3 times the node timeout at
  most): `{:ok, result}` or `{:error, message}`.
  """
  @spec remote(:local | node(), module(), atom(), list()) :: {:ok, term()} | {:error, String.t()}
  def remote(:local, m, f, a), do: {:ok, apply(m, f, a)}

  def remote(node, m, f, a) do
    case ClusterScope.Fanout.rpc(node, m, f, a, ClusterScope.Config.get(:node_timeout_ms) * 3) do
      {:ok, result} ->
        {:ok, result}

      {:error, {:exception, reason, stack}} ->
        message = Exception.format_banner(:error, reason, stack)
        {:error, "The call to #{node} failed: #{message}"}

      {:error, error} ->
        {:error,
         "The call to #{node} failed: #{ClusterScope.Fanout.describe(node, error).reason}"}
    end
  end

  # -- output ------------------------------------------------------------------

  defp list(operations) do
    rows =
      for {meta, availability} <- operations do
        [
          meta.name,
          "v#{meta.version}",
          meta.method |> Atom.to_string() |> String.upcase(),
          meta.path,
          if(availability == :ok, do: meta.summary, else: "UNAVAILABLE: " <> elem(availability, 1))
        ]
      end

    [
      table(["operation", "version", "method", "path", "summary"], rows),
      "\nRun `mix cluster_scope.op NAME --help` for an operation's flags.\n"
    ]
  end

  defp usage(meta) do
    flags = Enum.map_join(meta.parameters, " ", &flag_usage/1)
    "Usage: mix cluster_scope.op #{meta.name} #{flags} [--json] [--node NODE --cookie COOKIE]\n"
  end

  defp flag_usage(%{name: name, type: type} = spec) do
    value = type |> Atom.to_string() |> String.upcase()

    text =
      if name in @reserved,
        do: "--param #{name}=#{value}",
        else: "#{flag(name)} #{value}"

    if Map.get(spec, :required, false), do: text, else: "[#{text}]"
  end

  defp flag(name) when name in @reserved, do: "--param #{name}=VALUE"
  defp flag(name), do: "--" <> String.replace(Atom.to_string(name), "_", "-")

  defp help(meta, availability) do
    params =
      for spec <- meta.parameters do
        extras =
          [
            if(Map.get(spec, :required, false), do: "required"),
            if(Map.has_key?(spec, :default), do: "default #{inspect(spec.default)}"),
            if(Map.has_key?(spec, :values),
              do: "one of #{Enum.map_join(spec.values, ", ", &to_string/1)}"
            ),
            if(Map.has_key?(spec, :min), do: "min #{spec.min}"),
            if(Map.has_key?(spec, :max), do: "max #{spec.max}")
          ]
          |> Enum.reject(&is_nil/1)
          |> Enum.join(", ")

        [
          "  ",
          String.pad_trailing(flag(spec.name), 24),
          " ",
          Atom.to_string(spec.type),
          " ",
          Map.get(spec, :description, ""),
          if(extras != "", do: " (#{extras})", else: ""),
          "\n"
        ]
      end

    status = if availability == :ok, do: "", else: "UNAVAILABLE here: #{elem(availability, 1)}\n"

    [
      "#{meta.name} v#{meta.version}: #{meta.summary}\n",
      "HTTP: #{meta.method |> Atom.to_string() |> String.upcase()} #{meta.path}#{if meta.mutating, do: " (mutating)", else: ""}\n",
      status,
      usage(meta),
      if(params == [], do: "", else: ["\nParameters:\n" | params]),
      "\nCommon flags: --json, --node NODE --cookie COOKIE, --op-version N, --all | --nodes a,b (run on each node)\n"
    ]
  end

  defp output(payload, opts, render) do
    if opts[:json] do
      case ClusterScope.JSON.encode(payload) do
        {:ok, json} ->
          [json, "\n"]

        {:error, reason} ->
          ["could not encode JSON: #{inspect(reason)}\n", inspect(payload, pretty: true), "\n"]
      end
    else
      render.(payload)
    end
  end

  defp render_data(%{data: data, metadata: meta}) do
    [render_value(data, 0), node_errors(meta)]
  end

  defp render_error(%{error: error}) do
    fields =
      for %{field: f, message: m} <- Map.get(error.details, :fields, []), do: "  #{f}: #{m}\n"

    [
      "error (#{error.code}): #{error.message}\n",
      fields,
      Enum.map(error.remediation, &"  -> #{&1}\n")
    ]
  end

  defp node_errors(%{node_errors: []}), do: []

  defp node_errors(%{node_errors: errors}) do
    ["\nNodes that did not answer:\n" | Enum.map(errors, &"  #{&1.node}: #{&1.reason}\n")]
  end

  defp render_value(map, indent) when is_map(map) and not is_struct(map) do
    {tables, scalars} = Enum.split_with(map, fn {_k, v} -> list_of_maps?(v) end)
    pad = String.duplicate("  ", indent)

    lines =
      for {key, value} <- Enum.sort_by(scalars, &to_string(elem(&1, 0))) do
        if is_map(value) and not is_struct(value),
          do: [pad, to_string(key), ":\n", render_value(value, indent + 1)],
          else: [pad, to_string(key), ": ", scalar(value), "\n"]
      end

    tables =
      for {key, rows} <- tables do
        columns =
          rows
          |> Enum.flat_map(&Map.keys/1)
          |> Enum.uniq()
          |> Enum.filter(fn c ->
            Enum.all?(rows, &(not is_map(Map.get(&1, c)) and not is_list(Map.get(&1, c))))
          end)

        [
          pad,
          to_string(key),
          ":\n",
          table(
            Enum.map(columns, &to_string/1),
            Enum.map(rows, fn r -> Enum.map(columns, &scalar(Map.get(r, &1))) end)
          )
        ]
      end

    [lines, tables]
  end

  defp render_value(other, indent), do: [String.duplicate("  ", indent), scalar(other), "\n"]

  defp list_of_maps?([%{} | _] = list), do: Enum.all?(list, &is_map/1)
  defp list_of_maps?(_), do: false

  defp scalar(nil), do: "-"
  defp scalar(v) when is_binary(v), do: v
  defp scalar(v) when is_atom(v) or is_number(v), do: to_string(v)
  defp scalar(v), do: inspect(v, limit: 10)

  defp table(header, rows) do
    widths =
      Enum.reduce([header | rows], List.duplicate(0, length(header)), fn row, widths ->
        Enum.zip_with(row, widths, fn cell, w -> max(String.length(to_string(cell)), w) end)
      end)

    format = fn row ->
      [
        Enum.zip_with(row, widths, fn c, w -> String.pad_trailing(to_string(c), w) end)
        |> Enum.join("  ")
        |> String.trim_trailing(),
        "\n"
      ]
    end

    [
      format.(header),
      format.(Enum.map(widths, &String.duplicate("-", &1))),
      Enum.map(rows, format)
    ]
  end
end
