defmodule ClusterScope.NodeViews.Ports.Local do
  @moduledoc """
  What a node reads about its own ports and sockets: the node side of
  `ClusterScope.NodeViews.Ports`.

  Calls only OTP (`:erlang`, `:inet`, `:prim_inet`, `:socket`, `:lists`),
  so the caller loads it onto a node without ClusterScope and that node
  answers too.

  Rows are the node's ports (`:erlang.ports/0`: drivers, files, spawned
  programs, `gen_tcp`/`gen_udp` sockets, distribution links) and, when the
  `socket` module is loaded, its `socket` sockets (`:socket.which_sockets/0`,
  OTP 22+), which are not ports. A distribution port is marked with the
  node at its other end (`:erlang.system_info(:dist_ctrl)`).

  ## Cost

  One `:erlang.port_info/2` of the ranked item per port (queue size, input,
  output or memory: a read of the port's counters, under a microsecond)
  plus its name when filtering by name, at most `max_ports` and stopped at
  the deadline; one `:socket.info/1` per socket. The eligible rows are
  sorted on the node and only the best `limit` are read whole: the rest of
  `port_info`, and for an inet socket its addresses (`:inet.sockname/1`,
  `:inet.peername/1`), status (`:prim_inet.getstatus/1`) and counters
  (`:inet.getstat/1`); none of these touch the data in flight.
  """

  @hard_max 200_000
  @inet_names [~c"tcp_inet", ~c"udp_inet", ~c"sctp_inet"]

  @doc """
  The best `limit` ports and sockets of this node by `sort_by`
  (`:queue_size`, `:input`, `:output` or `:memory`; largest first, ties by
  id text), after the cursor `after` (`{value, node_text, id_text}`).
  Returns `%{rows:, more:, total:, scanned:, eligible:, timed_out:,
  dist_ports:}`.
  """
  @spec ports_v1(map()) :: map()
  def ports_v1(opts) do
    sort_by = :maps.get(:sort_by, opts)
    limit = :maps.get(:limit, opts)
    max = :erlang.min(:maps.get(:max_ports, opts, @hard_max), @hard_max)
    deadline = :erlang.monotonic_time(:millisecond) + :maps.get(:deadline_ms, opts, 5_000)
    name = :maps.get(:name, opts, nil)
    cursor = :maps.get(:after, opts, nil)
    me = :erlang.atom_to_binary(node(), :utf8)
    dist = dist_ports()
    ports = :erlang.ports()
    sockets = sockets()
    ctx = {sort_by, name, cursor, me, deadline, max}

    {acc, scanned, timed_out} = scan(ports ++ sockets, ctx, [], 0)
    sorted = :lists.sort(acc)
    eligible = length(sorted)
    best = :lists.sublist(sorted, limit)

    rows =
      :lists.filtermap(
        fn {neg, id, item} ->
          case full_row(item, id, dist) do
            :gone -> false
            row -> {true, :maps.put(:value, -neg, row)}
          end
        end,
        best
      )

    %{
      rows: rows,
      more: eligible > limit,
      total: length(ports) + length(sockets),
      ports: length(ports),
      sockets: length(sockets),
      scanned: scanned,
      eligible: eligible,
      timed_out: timed_out,
      dist_ports: length(dist)
    }
  end

  defp scan([], _ctx, acc, n), do: {acc, n, false}
  defp scan(_items, {_, _, _, _, _, max}, acc, n) when n >= max, do: {acc, n, false}

  defp scan([item | rest], ctx, acc, n) do
    {sort_by, name, cursor, me, deadline, _max} = ctx

    if :erlang.band(n, 255) == 255 and :erlang.monotonic_time(:millisecond) > deadline do
      {acc, n, true}
    else
      acc =
        case value(item, sort_by) do
          :gone ->
            acc

          value ->
            id = id_text(item)

            if name_ok?(item, name) and after_cursor?(cursor, value, me, id),
              do: [{-value, id, item} | acc],
              else: acc
        end

      scan(rest, ctx, acc, n + 1)
    end
  end

  defp after_cursor?(nil, _value, _me, _id), do: true

  defp after_cursor?({cv, cnode, cid}, value, me, id) do
    value < cv or (value == cv and (me > cnode or (me == cnode and id > cid)))
  end

  defp value(port, item) when is_port(port) do
    case port_info(port, item) do
      {^item, v} when is_integer(v) -> v
      _ -> :gone
    end
  end

  defp value(socket, item) do
    case socket_info(socket) do
      :gone -> :gone
      info -> socket_value(info, item)
    end
  end

  defp socket_value(info, item) do
    counters = :maps.get(:counters, info, %{})

    case item do
      :input -> :maps.get(:read_byte, counters, 0)
      :output -> :maps.get(:write_byte, counters, 0)
      _ -> 0
    end
  end

  defp name_ok?(_item, nil), do: true

  defp name_ok?(item, text) do
    :binary.match(name_of(item), text) != :nomatch
  end

  defp name_of(port) when is_port(port) do
    case port_info(port, :name) do
      {:name, name} -> to_bin(name)
      _ -> ""
    end
  end

  defp name_of(socket) do
    case socket_info(socket) do
      :gone -> ""
      info -> socket_name(info)
    end
  end

  @doc "The text of a port (`#Port<0.5>`) or a `socket` (`#Socket<0.1.2.3>`)."
  @spec id_text(port() | term()) :: binary()
  def id_text(port) when is_port(port), do: :erlang.list_to_binary(:erlang.port_to_list(port))

  def id_text({:"$socket", ref}) when is_reference(ref) do
    ~c"#Ref" ++ rest = :erlang.ref_to_list(ref)
    :erlang.list_to_binary(~c"#Socket" ++ rest)
  end

  def id_text(other), do: :erlang.list_to_binary(:io_lib.format(~c"~0tp", [other]))

  defp port_info(port, item) do
    :erlang.port_info(port, item)
  catch
    :error, _ -> :undefined
  end

  # `{port or pid, node}` of every distribution channel (TCP distribution
  # has a port per connected node, visible or hidden).
  defp dist_ports do
    :lists.map(fn {node, ctrl} -> {ctrl, node} end, :erlang.system_info(:dist_ctrl))
  catch
    :error, _ -> []
  end

  defp sockets do
    case :code.is_loaded(:socket) do
      {:file, _} -> which_sockets()
      false -> []
    end
  end

  defp which_sockets do
    :socket.which_sockets()
  catch
    :error, _ -> []
  end

  defp socket_info(socket) do
    :socket.info(socket)
  catch
    _, _ -> :gone
  end

  # ---------------------------------------------------------------------
  # Whole rows, for the winners only

  defp full_row(port, id, dist) when is_port(port) do
    case :erlang.port_info(port) do
      :undefined ->
        :gone

      info ->
        name = :proplists.get_value(:name, info, [])
        connected = :proplists.get_value(:connected, info)

        peer =
          case :lists.keyfind(port, 1, dist) do
            {_, node} -> node
            false -> nil
          end

        row = %{
          id: id,
          kind: kind(name),
          name: to_bin(name),
          connected: connected,
          connected_name: registered_name(connected),
          os_pid: os_pid(:proplists.get_value(:os_pid, info)),
          input: :proplists.get_value(:input, info, 0),
          output: :proplists.get_value(:output, info, 0),
          queue_size: counter(port, :queue_size),
          memory: counter(port, :memory),
          distribution: peer != nil,
          peer_node: if(peer == nil, do: nil, else: :erlang.atom_to_binary(peer, :utf8))
        }

        if :lists.member(name, @inet_names), do: :maps.merge(row, inet(port)), else: row
    end
  catch
    :error, _ -> :gone
  end

  defp full_row(socket, id, _dist) do
    case socket_info(socket) do
      :gone ->
        :gone

      info ->
        counters = :maps.get(:counters, info, %{})
        owner = :maps.get(:owner, info, nil)

        %{
          id: id,
          kind: "socket",
          name: socket_name(info),
          connected: owner,
          connected_name: registered_name(owner),
          os_pid: nil,
          input: :maps.get(:read_byte, counters, 0),
          output: :maps.get(:write_byte, counters, 0),
          queue_size: 0,
          memory: 0,
          distribution: false,
          peer_node: nil,
          local_address: address(safe(fn -> :socket.sockname(socket) end)),
          peer_address: address(safe(fn -> :socket.peername(socket) end)),
          states: states(info),
          stats: %{
            recv_oct: :maps.get(:read_byte, counters, 0),
            send_oct: :maps.get(:write_byte, counters, 0),
            recv_cnt: :maps.get(:read_pkg, counters, 0),
            send_cnt: :maps.get(:write_pkg, counters, 0)
          }
        }
    end
  end

  defp socket_name(info) do
    parts = [:maps.get(:domain, info, :undefined), :maps.get(:type, info, :undefined)]
    :erlang.iolist_to_binary(["socket/", :lists.join("/", :lists.map(&to_bin/1, parts))])
  end

  defp states(info) do
    rs = :maps.get(:rstates, info, [])
    ws = :maps.get(:wstates, info, [])
    :lists.usort(atom_texts(rs ++ ws))
  end

  defp inet(port) do
    %{
      local_address: address(safe(fn -> :inet.sockname(port) end)),
      peer_address: address(safe(fn -> :inet.peername(port) end)),
      states:
        case safe(fn -> :prim_inet.getstatus(port) end) do
          {:ok, list} -> atom_texts(list)
          _ -> []
        end,
      stats:
        case safe(fn -> :inet.getstat(port, [:recv_oct, :send_oct, :recv_cnt, :send_cnt]) end) do
          {:ok, list} -> :maps.from_list(list)
          _ -> nil
        end
    }
  end

  defp atom_texts(list) do
    :lists.filtermap(
      fn
        s when is_atom(s) -> {true, :erlang.atom_to_binary(s, :utf8)}
        _ -> false
      end,
      list
    )
  end

  defp safe(fun) do
    fun.()
  catch
    _, _ -> :error
  end

  defp address({:ok, {ip, port}}) when is_tuple(ip) and is_integer(port) do
    text = :erlang.list_to_binary(:inet.ntoa(ip))

    case tuple_size(ip) do
      8 -> <<"[", text::binary, "]:", :erlang.integer_to_binary(port)::binary>>
      _ -> <<text::binary, ":", :erlang.integer_to_binary(port)::binary>>
    end
  end

  defp address({:ok, %{family: _, addr: ip, port: port}}) when is_tuple(ip),
    do: address({:ok, {ip, port}})

  defp address({:ok, %{family: :local, path: path}}), do: to_bin(path)
  defp address({:ok, {:local, path}}), do: to_bin(path)
  defp address(_), do: nil

  defp kind(~c"tcp_inet"), do: "tcp"
  defp kind(~c"udp_inet"), do: "udp"
  defp kind(~c"sctp_inet"), do: "sctp"
  defp kind(_), do: "port"

  defp counter(port, item) do
    case port_info(port, item) do
      {^item, v} when is_integer(v) -> v
      _ -> 0
    end
  end

  defp registered_name(pid) when is_pid(pid) and node(pid) == node() do
    case :erlang.process_info(pid, :registered_name) do
      {:registered_name, n} when is_atom(n) -> :erlang.atom_to_binary(n, :utf8)
      _ -> nil
    end
  end

  defp registered_name(_), do: nil

  defp os_pid(n) when is_integer(n), do: n
  defp os_pid(_), do: nil

  defp to_bin(a) when is_atom(a), do: :erlang.atom_to_binary(a, :utf8)
  defp to_bin(b) when is_binary(b), do: b

  defp to_bin(l) when is_list(l) do
    case :unicode.characters_to_binary(l) do
      b when is_binary(b) -> b
      _ -> :erlang.list_to_binary(:io_lib.format(~c"~0tp", [l]))
    end
  end

  defp to_bin(other), do: :erlang.list_to_binary(:io_lib.format(~c"~0tp", [other]))
end
