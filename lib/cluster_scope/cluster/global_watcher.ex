defmodule ClusterScope.Cluster.GlobalWatcher do
  @moduledoc """
  Attributes the links that `global` cuts.

  Since OTP 25, `global` disconnects nodes on its own to prevent overlapping
  partitions (`prevent_overlapping_partitions`), and says so only in a log
  warning. This `:logger` handler watches for that warning and tells
  `ClusterScope.Cluster.State`, so the nodedown that follows gets the right
  cause instead of a bare `disconnect`.

  ## Cost and safety

  It runs in the process that logs, for warnings only, and does one string
  match per warning. It never raises: a handler that raises is removed by
  `:logger`, and this one catches everything.
  """

  @handler :cluster_scope_global_watcher

  @doc "Adds the handler (idempotent)."
  @spec install() :: :ok
  def install do
    case :logger.add_handler(@handler, __MODULE__, %{level: :warning}) do
      :ok -> :ok
      {:error, {:already_exist, _}} -> :ok
      {:error, _} -> :ok
    end
  end

  @doc false
  # :logger handler callback.
  def log(%{msg: msg}, _config) do
    case msg do
      # "'global' at node ~p ~s node ~p in order to prevent overlapping
      # partitions", [node(), What, Node] (OTP 25; older releases had no ~s).
      {format, [a | rest]} when (is_list(format) or is_binary(format)) and rest != [] ->
        text = IO.chardata_to_string(format)
        b = List.last(rest)

        if String.contains?(text, "overlapping partitions") and is_atom(a) and is_atom(b) do
          ClusterScope.Cluster.State.global_disconnect(a, b)
        end

      _ ->
        :ok
    end

    :ok
  catch
    _, _ -> :ok
  end

  def log(_event, _config), do: :ok
end
