defmodule ClusterScope do
  @moduledoc """
  ClusterScope: debugging and monitoring for a whole BEAM cluster.

  Add `:cluster_scope` to the deps of a clustered application and it starts
  with it. This module is the entry point of the Elixir API; see the README
  for the map of the library.
  """

  @typedoc "What this node reports about its ClusterScope."
  @type node_build :: %{
          node: node(),
          otp_release: String.t(),
          elixir_version: String.t(),
          cluster_scope_version: String.t(),
          native: ClusterScope.Native.build_info() | {:error, :native_unavailable}
        }

  @doc """
  The build of ClusterScope on this node: versions of OTP, Elixir,
  ClusterScope and its native core (or `{:error, :native_unavailable}`).
  Cheap and side-effect free.
  """
  @spec build_info() :: node_build()
  def build_info do
    %{
      node: node(),
      otp_release: List.to_string(:erlang.system_info(:otp_release)),
      elixir_version: System.version(),
      cluster_scope_version: version(),
      native: ClusterScope.Native.build_info()
    }
  end

  @doc "ClusterScope's version on this node."
  @spec version() :: String.t()
  def version do
    case :application.get_key(:cluster_scope, :vsn) do
      {:ok, vsn} -> List.to_string(vsn)
      :undefined -> "unknown"
    end
  end
end
