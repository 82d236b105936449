alias ClusterScope.LocalCluster
alias ClusterScope.Test.Cluster

# Every node of a test cluster shares this tick time (seconds), so that a cut
# link is noticed by Erlang itself within a few seconds instead of a minute.
net_ticktime = 3

exclude = [:bench, :browser]

exclude =
  case LocalCluster.ensure_distributed(
         name: "cluster_scope_test_#{System.pid()}",
         net_ticktime: net_ticktime
       ) do
    {:ok, _node} ->
      exclude

    {:error, reason} ->
      IO.puts("Skipping :cluster and :chaos tests: distribution unavailable (#{inspect(reason)})")
      [:cluster, :chaos | exclude]
  end

exclude =
  case {:chaos in exclude, Cluster.chaos_available?()} do
    {true, _} ->
      exclude

    {false, :ok} ->
      exclude

    {false, {:error, reason}} ->
      # CI runs as root with iptables installed by the Makefile: there, a
      # missing capability is a broken setup, not a reason to skip.
      if System.get_env("CI") == "true" do
        IO.puts(:stderr, "CI must run the :chaos tests, but: #{reason}")
        System.halt(1)
      end

      IO.puts("Skipping :chaos tests: #{reason}")
      [:chaos | exclude]
  end

if :chaos not in exclude do
  Cluster.remove_stale_chains()
  ExUnit.after_suite(fn _ -> Cluster.remove_chain() end)
end

ExUnit.start(exclude: exclude, capture_log: true)
