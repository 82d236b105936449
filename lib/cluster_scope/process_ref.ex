defmodule ClusterScope.ProcessRef do
  @moduledoc """
  A node-qualified process id, and its one text form.

  A pid printed as `#PID<0.123.0>` means different processes on different
  nodes (the first number is relative to the node printing it). ClusterScope
  names a process by its home node and the two numbers it has there:

      "0.123.0@app@10.0.0.5"

  That form is used in every output and accepted in every input (it is safe
  in a URL path segment). Inputs may also be `<0.123.0>` or `#PID<0.123.0>`
  (a process of this node), or `<0.123.0>@node`. The node must be a known
  node of the cluster: parsing never creates an atom.
  """

  @enforce_keys [:node, :id, :serial]
  defstruct @enforce_keys

  @type t :: %__MODULE__{node: node(), id: non_neg_integer(), serial: non_neg_integer()}

  @doc "The reference of a pid, wherever it lives."
  @spec from_pid(pid()) :: t()
  def from_pid(pid) when is_pid(pid) do
    # On its home node a pid prints as <0.ID.SERIAL>; ask that form without
    # depending on which node we are.
    node = node(pid)
    [_, id, serial] = pid |> :erlang.pid_to_list() |> parse_numbers()
    %__MODULE__{node: node, id: id, serial: serial}
  end

  @doc "The canonical text form, `\"0.ID.SERIAL@node\"`."
  @spec to_string(t() | pid()) :: String.t()
  def to_string(pid) when is_pid(pid), do: pid |> from_pid() |> __MODULE__.to_string()
  def to_string(%__MODULE__{node: node, id: id, serial: serial}), do: "0.#{id}.#{serial}@#{node}"

  @doc """
  Parses a text form. `known_nodes` are the nodes an input may name (default:
  this node, the connected ones and, in simulated mode, the virtual ones).
  """
  @spec parse(String.t(), [node()]) :: {:ok, t()} | {:error, String.t()}
  def parse(text, known_nodes \\ known()) when is_binary(text) do
    {local, node_text} =
      case String.split(text, "@", parts: 2) do
        [local, node_text] -> {local, node_text}
        [local] -> {local, nil}
      end

    with {:ok, id, serial} <- parse_local(local),
         {:ok, node} <- resolve_node(node_text, known_nodes) do
      {:ok, %__MODULE__{node: node, id: id, serial: serial}}
    end
  end

  # This node, the connected ones and, in simulated mode, the virtual ones.
  defp known, do: [node() | Node.list(:connected)] ++ ClusterScope.Simulator.virtual_nodes()

  @doc """
  The pid itself. Must run on the process's home node (that is where the
  numbers mean this process): use it inside the code you send there.
  """
  @spec to_local_pid(t()) :: {:ok, pid()} | {:error, :wrong_node}
  def to_local_pid(%__MODULE__{node: node, id: id, serial: serial}) do
    if node == node() do
      {:ok, :erlang.list_to_pid(~c"<0.#{id}.#{serial}>")}
    else
      {:error, :wrong_node}
    end
  end

  defp parse_local(local) do
    trimmed =
      local
      |> String.trim_leading("#PID")
      |> String.trim_leading("<")
      |> String.trim_trailing(">")

    case Regex.run(~r/\A0\.(\d{1,10})\.(\d{1,10})\z/, trimmed) do
      [_, id, serial] ->
        {:ok, String.to_integer(id), String.to_integer(serial)}

      nil ->
        {:error, "must be a process id like \"0.123.0@node@host\" or \"<0.123.0>\""}
    end
  end

  defp resolve_node(nil, _known), do: {:ok, node()}

  defp resolve_node(text, known) do
    case Enum.find(known, &(Atom.to_string(&1) == text)) do
      nil -> {:error, "names node #{inspect(text)}, which is not a known node of the cluster"}
      node -> {:ok, node}
    end
  end

  defp parse_numbers(charlist) do
    charlist
    |> List.to_string()
    |> String.trim_leading("<")
    |> String.trim_trailing(">")
    |> String.split(".")
    |> Enum.map(&String.to_integer/1)
  end
end

defimpl String.Chars, for: ClusterScope.ProcessRef do
  def to_string(ref), do: ClusterScope.ProcessRef.to_string(ref)
end
