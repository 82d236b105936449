defmodule ClusterScope.Cluster.TcpInfo do
  @moduledoc """
  What the kernel knows about each distribution connection (Linux `TCP_INFO`).

  A peer that stops answering is either frozen (its VM is stopped but its
  kernel still acknowledges what we send) or cut off by the network (nothing
  is acknowledged and our kernel retransmits). Erlang cannot tell them apart
  for a whole tick time; the kernel can within a few hundred milliseconds.
  `net_loss?/2` is that signal.

  ## Cost

  One `getsockopt` per connection (a few microseconds). On systems without
  `TCP_INFO`, or with a distribution carrier that is not a TCP port, every
  link reports `:unknown`.
  """

  # IPPROTO_TCP and TCP_INFO on Linux; the first 104 bytes of struct tcp_info
  # hold every field read here.
  @ipproto_tcp 6
  @tcp_info 11
  @size 104

  @typedoc "The fields used from struct tcp_info."
  @type t :: %{
          retransmits: non_neg_integer(),
          backoff: non_neg_integer(),
          rto_us: non_neg_integer(),
          unacked: non_neg_integer(),
          last_data_sent_ms: non_neg_integer(),
          last_data_recv_ms: non_neg_integer(),
          last_ack_recv_ms: non_neg_integer()
        }

  @doc "TCP facts of each distribution connection: `%{node => t() | :unknown}`."
  @spec dist_links() :: %{node() => t() | :unknown}
  def dist_links do
    for {node, ctrl} <- :erlang.system_info(:dist_ctrl), into: %{}, do: {node, read(ctrl)}
  end

  @doc """
  Whether the connection shows loss: data we sent is still unacknowledged
  and no acknowledgement came for more than `silence_ms`.
  """
  @spec net_loss?(t() | :unknown, non_neg_integer()) :: boolean()
  def net_loss?(:unknown, _silence_ms), do: false

  def net_loss?(%{unacked: unacked, last_ack_recv_ms: last_ack}, silence_ms),
    do: unacked > 0 and last_ack > silence_ms

  @doc "Reads the TCP facts of one port or socket."
  @spec read(port() | term()) :: t() | :unknown
  def read(ctrl) when is_port(ctrl) do
    case :inet.getopts(ctrl, [{:raw, @ipproto_tcp, @tcp_info, @size}]) do
      {:ok, [{:raw, @ipproto_tcp, @tcp_info, bin}]} when byte_size(bin) >= 60 -> parse(bin)
      _ -> :unknown
    end
  catch
    _, _ -> :unknown
  end

  def read(_), do: :unknown

  defp parse(
         <<_state, _ca_state, retransmits, _probes, backoff, _options, _wscale, _flags,
           rto::native-32, _ato::native-32, _snd_mss::native-32, _rcv_mss::native-32,
           unacked::native-32, _sacked::native-32, _lost::native-32, _retrans::native-32,
           _fackets::native-32, last_data_sent::native-32, _last_ack_sent::native-32,
           last_data_recv::native-32, last_ack_recv::native-32, _::binary>>
       ) do
    %{
      retransmits: retransmits,
      backoff: backoff,
      rto_us: rto,
      unacked: unacked,
      last_data_sent_ms: last_data_sent,
      last_data_recv_ms: last_data_recv,
      last_ack_recv_ms: last_ack_recv
    }
  end
end
