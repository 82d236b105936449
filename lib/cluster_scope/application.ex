defmodule ClusterScope.Application do
  @moduledoc """
  ClusterScope's OTP application.

  Start-up does three cheap things: validates the configuration
  (`ClusterScope.Config`), loads the native core (`ClusterScope.Native`; a
  failure is logged and tolerated), and starts the supervision tree that the
  services hang from. Nothing here can fail because of the environment: a
  missing NIF or a bad option degrades ClusterScope, never the host.
  """

  use Application

  @impl true
  def start(_type, _args) do
    ClusterScope.Config.load()
    # Load the NIF now so a problem is logged at boot, not at first use.
    Code.ensure_loaded(ClusterScope.Native)

    http = ClusterScope.Config.get(:http)

    children =
      [
        {Task.Supervisor, name: ClusterScope.OperationSupervisor, max_children: 64},
        ClusterScope.Operation.Registry
      ] ++ if(http[:enabled], do: [{ClusterScope.Web.Endpoint, http}], else: [])

    Supervisor.start_link(children, strategy: :one_for_one, name: ClusterScope.Supervisor)
  end
end
