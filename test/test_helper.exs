alias ClusterScope.LocalCluster
alias ClusterScope.Test.{Cluster, Setup}

# Every node of a test cluster shares this tick time (seconds), so that a cut
# link is noticed by Erlang itself within a few seconds instead of a minute.
net_ticktime = 3

distribution =
  case LocalCluster.ensure_distributed(
         name: "cluster_scope_test_#{System.pid()}",
         net_ticktime: net_ticktime
       ) do
    {:ok, _node} -> :ok
    {:error, reason} -> {:error, reason}
  end

# Under CI=true (as root, iptables installed by the Makefile) a missing
# capability is a broken setup: the run halts instead of skipping :cluster
# or :chaos tests (see ClusterScope.Test.Setup).
exclude =
  case Setup.decide([:bench, :browser], Setup.ci?(), distribution, &Cluster.chaos_available?/0) do
    {:run, exclude, notices} ->
      Enum.each(notices, &IO.puts/1)
      exclude

    {:halt, message} ->
      IO.puts(:stderr, message)
      System.halt(1)
  end

# Optional integrations: their tests run when the library is loadable
# (ERL_LIBS=...), else they are skipped, CI included.
{exclude, notices} =
  Setup.optional(exclude,
    arsenal: Arsenal.Registry,
    libcluster: Elixir.Cluster.Strategy,
    horde: Horde.Registry
  )

Enum.each(notices, &IO.puts/1)

# :browser runs when chromium, node and node_modules/playwright-core are here
# (make test installs them); under CI=true a missing one halts the run.
exclude =
  case Setup.browser(exclude, Setup.ci?(), ClusterScope.Test.Browser.available()) do
    {:run, exclude, notices} ->
      Enum.each(notices, &IO.puts/1)
      exclude

    {:halt, message} ->
      IO.puts(:stderr, message)
      System.halt(1)
  end

# Horde's unavailable path (:no_horde) runs when Horde does not load.
exclude = if :horde in exclude, do: exclude, else: [:no_horde | exclude]

if :chaos not in exclude do
  Cluster.remove_stale_chains()
  ExUnit.after_suite(fn _ -> Cluster.remove_chain() end)
end

ExUnit.start(exclude: exclude, capture_log: true)
