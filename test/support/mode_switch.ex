defmodule ClusterScope.Test.ModeSwitch do
  @moduledoc """
  Tests that switch modes turn `allow_mode_switch` on (it is off by default,
  as on a production node) and restore it, and the mode, when they end.
  """

  @doc "Sets `allow_mode_switch` for the calling test; restored on exit."
  @spec allow(boolean()) :: :ok
  def allow(value \\ true) do
    previous = Application.fetch_env(:cluster_scope, :allow_mode_switch)
    Application.put_env(:cluster_scope, :allow_mode_switch, value)
    ClusterScope.Config.load()

    ExUnit.Callbacks.on_exit(fn ->
      # Back to the real cluster first (always allowed), then the option.
      ClusterScope.Mode.set(:multi_node)

      case previous do
        {:ok, v} -> Application.put_env(:cluster_scope, :allow_mode_switch, v)
        :error -> Application.delete_env(:cluster_scope, :allow_mode_switch)
      end

      ClusterScope.Config.load()
    end)

    :ok
  end
end
