defmodule ClusterScope.LocalCluster do
  @moduledoc """
  Real peer nodes on this host, started through OTP's `:peer`.

  Used by `make demo`, by the test harness, and by the `:local_cluster`
  development mode: a developer gets a real cluster of separate VMs on a
  laptop, each running this project's code with ClusterScope started.

  Each peer is a separate OS process started from this node's `erl`, with this
  node's code paths (everything outside the OTP root), the same cookie (or
  one of its own, `:cookie`) and net tick time, and distribution bound to the peer's own loopback address
  (`127.0.0.1` by default; `127.0.0.2`, `127.0.0.3`, ... to make links
  separable by address for partition tests).

  Two control connections are offered:

    * `:distribution` (default) - the peer is connected to this node and dies
      with it, like `:peer.start_link/1`.
    * `:standard_io` - this node controls the peer through the peer's
      standard I/O, not through Erlang distribution, so the peer can still be
      asked questions after its distribution links are cut.

  ## Cost and safety

  Each peer is a full VM (about 40 MB and 0.2-0.6 s to boot). Peers stop when
  the process that owns their `:peer` controller goes away, so they do not
  outlive the node that started them.
  """

  defmodule Peer do
    @moduledoc "A started peer node."
    @enforce_keys [:name, :node, :ip, :pid, :os_pid, :connection]
    defstruct @enforce_keys

    @type t :: %__MODULE__{
            name: String.t(),
            node: node(),
            ip: :inet.ip4_address(),
            pid: pid(),
            os_pid: non_neg_integer(),
            connection: :distribution | :standard_io
          }
  end

  @default_boot_timeout 30_000

  @doc """
  Makes this node distributed if it is not: starts epmd when needed and
  `:net_kernel` with long names on `127.0.0.1`.

  Options: `:name` (node name prefix, default `"cluster_scope"`), `:net_ticktime`
  (seconds, default the VM's). Returns `{:ok, node()}`.
  """
  @spec ensure_distributed(keyword()) :: {:ok, node()} | {:error, term()}
  def ensure_distributed(opts \\ []) do
    if Node.alive?() do
      {:ok, node()}
    else
      :ok = ensure_epmd()
      prefix = Keyword.get(opts, :name, "cluster_scope")
      # One node name per OS process: two runs on one host never collide.
      name = String.to_atom("#{prefix}_#{System.pid()}@127.0.0.1")
      :ok = :application.set_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})

      net_opts =
        case Keyword.get(opts, :net_ticktime) do
          nil -> %{name_domain: :longnames}
          ticktime -> %{name_domain: :longnames, net_ticktime: ticktime}
        end

      case :net_kernel.start(name, net_opts) do
        {:ok, _} -> {:ok, node()}
        {:error, {:already_started, _}} -> {:ok, node()}
        {:error, reason} -> {:error, reason}
      end
    end
  end

  @doc """
  Starts epmd in the background when it is not running (`epmd -daemon` is a
  no-op when it is).
  """
  @spec ensure_epmd() :: :ok | {:error, String.t()}
  def ensure_epmd do
    case System.find_executable("epmd") do
      nil ->
        {:error, "epmd not found on PATH (install erlang-nox)"}

      epmd ->
        {_, 0} = System.cmd(epmd, ["-daemon"], stderr_to_stdout: true)
        :ok
    end
  end

  @doc """
  A fresh random cookie (24 random bytes as lower-case hex) for peers that
  must not share this node's. Creates one atom per call: call it once per
  group of peers, never per request.

  Hex, not base64: a URL-safe base64 text starts with `-` one time in 64,
  and `-setcookie -...` reads as another flag, leaving the peer with the
  default cookie (a CI run saw both peers of a local cluster refused).
  """
  @spec random_cookie() :: atom()
  def random_cookie do
    :crypto.strong_rand_bytes(24) |> Base.encode16(case: :lower) |> String.to_atom()
  end

  @doc """
  Starts one peer node.

  Options:

    * `:name` - node name (without host); default a unique generated name
    * `:ip` - the peer's loopback address as a tuple, default `{127, 0, 0, 1}`
    * `:connection` - `:distribution` (default) or `:standard_io`
    * `:link` - link the `:peer` controller to the caller (default `true`)
    * `:apps` - applications to start on the peer, default `[:cluster_scope]`
    * `:app_env` - `[{app, key, value}]` set before the apps start
    * `:args` - extra `erl` arguments (list of strings)
    * `:cookie` - the peer's cookie (an atom), default this node's; this
      node sets it for the peer (`:erlang.set_cookie/2`) so it can still
      connect, while nodes that only know this node's cookie cannot
    * `:connect_all` - `false` starts the peer with `-connect_all false`:
      its `global` never connects it to the nodes of the nodes it meets
      (default `true`, the VM's default)
    * `:agent` - `false` starts a node without ClusterScope's code at all
      (its ebin is left off the code path and no app is started): an
      *agentless* node, as a host's node without the dependency would be
    * `:boot_timeout` - milliseconds, default #{@default_boot_timeout}
  """
  @spec start_peer(keyword()) :: {:ok, Peer.t()} | {:error, term()}
  def start_peer(opts \\ []) do
    with {:ok, _} <- ensure_distributed() do
      do_start_peer(opts)
    end
  end

  defp do_start_peer(opts) do
    ip = Keyword.get(opts, :ip, {127, 0, 0, 1})
    name = Keyword.get_lazy(opts, :name, &unique_name/0)
    connection = Keyword.get(opts, :connection, :distribution)
    host = ip |> :inet.ntoa() |> List.to_string()

    peer_opts = %{
      name: String.to_charlist(name),
      host: String.to_charlist(host),
      longnames: true,
      args: Enum.map(erl_args(ip, opts), &String.to_charlist/1),
      wait_boot: Keyword.get(opts, :boot_timeout, @default_boot_timeout)
    }

    # Without :connection, :peer controls the node through distribution.
    peer_opts =
      if connection == :standard_io,
        do: Map.put(peer_opts, :connection, :standard_io),
        else: peer_opts

    start = if Keyword.get(opts, :link, true), do: &:peer.start_link/1, else: &:peer.start/1

    # Set before the peer boots: it connects back to this node at once.
    case Keyword.get(opts, :cookie) do
      nil -> :ok
      cookie -> true = :erlang.set_cookie(String.to_atom("#{name}@#{host}"), cookie)
    end

    with {:ok, pid, node} <- start.(peer_opts) do
      peer = %Peer{name: name, node: node, ip: ip, pid: pid, os_pid: 0, connection: connection}
      peer = %{peer | os_pid: peer |> call(:os, :getpid, []) |> List.to_integer()}

      case start_apps(peer, opts) do
        :ok ->
          {:ok, peer}

        error ->
          stop(peer)
          error
      end
    end
  end

  @doc """
  Starts `count` peers. With `aliases: true` each gets its own loopback
  address, `127.0.0.2` upwards (or from `alias_base: {127, x, y, z}`
  upwards: z + 1, z + 2, ...); other options as in `start_peer/1`.
  The peers are then connected in a full mesh with this node (see
  `connect_mesh/2`; `observer: :hidden` to join as a hidden node,
  `connect: false` to skip).
  """
  @spec start_peers(pos_integer(), keyword()) :: {:ok, [Peer.t()]} | {:error, term()}
  def start_peers(count, opts \\ []) when is_integer(count) and count > 0 do
    aliases? = Keyword.get(opts, :aliases, false)
    prefix = Keyword.get_lazy(opts, :name_prefix, &unique_name/0)

    results =
      1..count
      |> Task.async_stream(
        fn i ->
          {o1, o2, o3, o4} = Keyword.get(opts, :alias_base, {127, 0, 0, 1})
          ip = if aliases?, do: {o1, o2, o3, o4 + i}, else: Keyword.get(opts, :ip, {127, 0, 0, 1})
          start_peer(Keyword.merge(opts, name: "#{prefix}_#{i}", ip: ip, link: false))
        end,
        timeout: :infinity,
        ordered: true
      )
      |> Enum.map(fn {:ok, result} -> result end)

    case Enum.split_with(results, &match?({:ok, _}, &1)) do
      {oks, []} ->
        peers = Enum.map(oks, fn {:ok, peer} -> peer end)
        if Keyword.get(opts, :link, true), do: Enum.each(peers, &Process.link(&1.pid))

        connected =
          if Keyword.get(opts, :connect, true),
            do: connect_mesh(peers, Keyword.get(opts, :observer, :visible)),
            else: :ok

        with :ok <- connected, do: {:ok, peers}

      {oks, [error | _]} ->
        Enum.each(oks, fn {:ok, peer} -> stop(peer) end)
        error
    end
  end

  @doc """
  Connects every peer to every other peer and this node to every peer, and
  checks each link is up.

  `observer` says how this node joins: `:visible` (a member of the cluster,
  the default) or `:hidden` (`:net_kernel.hidden_connect_node/1`: this node
  watches the peers without being part of their full mesh, so `global` does
  not count it when it resolves overlapping partitions).
  Returns `:ok` or `{:error, {:not_connected, from, to}}`.
  """
  @spec connect_mesh([Peer.t()], :visible | :hidden) :: :ok | {:error, term()}
  def connect_mesh(peers, observer \\ :visible) do
    nodes = Enum.map(peers, & &1.node)

    links =
      for peer <- peers, target <- nodes, target != peer.node do
        {peer.node, target, fn -> call(peer, :net_kernel, :connect_node, [target], 15_000) end}
      end ++
        for node <- nodes do
          connect =
            case observer do
              :visible -> fn -> :net_kernel.connect_node(node) end
              :hidden -> fn -> :net_kernel.hidden_connect_node(node) end
            end

          {node(), node, connect}
        end

    Enum.find_value(links, :ok, fn {from, to, connect} ->
      if connect.() != true, do: {:error, {:not_connected, from, to}}
    end)
  end

  @doc """
  Calls `module.fun(args)` on the peer over its control connection (standard
  I/O through `:peer.call/5`, or distribution through `:erpc.call/5`), with a
  timeout (default 5 s). Raises on timeout or remote exception.
  """
  @spec call(Peer.t(), module(), atom(), list(), timeout()) :: term()
  def call(peer, module, fun, args, timeout \\ 5_000)

  def call(%Peer{connection: :standard_io, pid: pid}, module, fun, args, timeout),
    do: :peer.call(pid, module, fun, args, timeout)

  def call(%Peer{connection: :distribution, node: node}, module, fun, args, timeout),
    do: :erpc.call(node, module, fun, args, timeout)

  @doc "Stops the peer gracefully (`init:stop` through its controller)."
  @spec stop(Peer.t()) :: :ok
  def stop(%Peer{pid: pid}) do
    if Process.alive?(pid), do: :peer.stop(pid)
    :ok
  catch
    :exit, _ -> :ok
  end

  defp start_apps(peer, opts) do
    env = Keyword.get(opts, :app_env, [])

    # Peers started from here run this node's profile (a development or test
    # node's peers are not production nodes), unless told otherwise.
    env =
      if Enum.any?(env, &match?({:cluster_scope, :profile, _}, &1)),
        do: env,
        else: [{:cluster_scope, :profile, ClusterScope.Config.profile()} | env]

    default_apps = if Keyword.get(opts, :agent, true), do: [:cluster_scope], else: []
    apps = Keyword.get(opts, :apps, default_apps)

    for {app, _, _} <- env, do: call(peer, :application, :load, [app])
    for {app, key, value} <- env, do: :ok = call(peer, :application, :set_env, [app, key, value])

    Enum.reduce_while(apps, :ok, fn app, :ok ->
      case call(peer, :application, :ensure_all_started, [app], 15_000) do
        {:ok, _} -> {:cont, :ok}
        {:error, reason} -> {:halt, {:error, {:app_start_failed, app, reason}}}
      end
    end)
  end

  defp erl_args(ip, opts) do
    ip_term = ip |> Tuple.to_list() |> Enum.join(",")
    otp_root = List.to_string(:code.root_dir())

    paths =
      :code.get_path()
      |> Enum.map(&List.to_string/1)
      |> Enum.reject(&(String.starts_with?(&1, otp_root) or &1 == "."))
      |> Enum.reject(&(Keyword.get(opts, :agent, true) == false and &1 == own_ebin()))

    # Bind both the listener and outgoing connections to the peer's address,
    # so each link between two peers is identified by its address pair.
    cookie = Keyword.get_lazy(opts, :cookie, &Node.get_cookie/0)

    connect_all =
      if Keyword.get(opts, :connect_all, true), do: [], else: ["-connect_all", "false"]

    [
      "-setcookie",
      Atom.to_string(cookie),
      "-kernel",
      "inet_dist_use_interface",
      "{#{ip_term}}",
      "-kernel",
      "inet_dist_connect_options",
      "[{ip,{#{ip_term}}}]",
      "-kernel",
      "net_ticktime",
      Integer.to_string(:net_kernel.get_net_ticktime() |> ticktime())
    ] ++ connect_all ++ Enum.flat_map(paths, &["-pa", &1]) ++ Keyword.get(opts, :args, [])
  end

  defp own_ebin, do: :cluster_scope |> :code.lib_dir(:ebin) |> List.to_string()

  defp ticktime({:ongoing_change_to, t}), do: t
  defp ticktime(t) when is_integer(t), do: t
  defp ticktime(_), do: 60

  defp unique_name do
    "cs_peer_#{System.pid()}_#{System.unique_integer([:positive])}"
  end
end
