defmodule ClusterScope.Horde.Discovery do
  @moduledoc """
  Finds the `Horde.Registry`s and `Horde.DynamicSupervisor`s running on
  this node, and turns a name given as text into one of them without ever
  creating an atom.

  A Horde registry is a registered process whose initial call is
  `Horde.RegistryImpl.init/1`; a Horde supervisor one whose initial call is
  `Horde.DynamicSupervisorImpl.init/1` (the process its name refers to,
  which `Horde.Cluster.members/1` and `start_child/2` talk to). Horde keeps
  no configuration of its own (its processes are started by the host's
  supervision tree with their options), so their processes are the source.
  Only registered names that have a `<name>.Crdt` sibling are looked at,
  so the cost is one `Process.registered/0` and one `Process.info/2` per
  Horde process (microseconds for hundreds of registered names).

  Works without Horde (nothing is found); never calls a Horde process.
  """

  @typedoc "What is found on this node."
  @type found :: %{registries: [atom()], supervisors: [atom()]}

  @doc "Whether Horde's modules are loadable on this node."
  @spec available?() :: boolean()
  def available?, do: Code.ensure_loaded?(Horde.Registry)

  @doc "The Horde registries and supervisors registered on this node, sorted by name."
  @spec local() :: found()
  def local do
    registered = Process.registered()
    texts = MapSet.new(registered, &Atom.to_string/1)

    found =
      for name <- registered,
          MapSet.member?(texts, Atom.to_string(name) <> ".Crdt"),
          kind = kind(Process.whereis(name)),
          kind != nil,
          do: {kind, name}

    %{
      registries: for({:registry, n} <- found, do: n) |> Enum.sort(),
      supervisors: for({:supervisor, n} <- found, do: n) |> Enum.sort()
    }
  end

  defp kind(pid) when is_pid(pid) do
    case Process.info(pid, :dictionary) do
      {:dictionary, dict} ->
        case List.keyfind(dict, :"$initial_call", 0) do
          {_, {Horde.RegistryImpl, :init, 1}} -> :registry
          {_, {Horde.DynamicSupervisorImpl, :init, 1}} -> :supervisor
          _ -> nil
        end

      _ ->
        nil
    end
  end

  defp kind(_), do: nil

  @doc """
  The registry (`:registry`) or supervisor (`:supervisor`) named `text` on
  this node. `text` is compared with each found name as Elixir writes it
  (`MyApp.Registry`, `:my_registry`) and as an atom's text
  (`Elixir.MyApp.Registry`, `my_registry`); nothing is created from it.
  An atom is accepted as is when it is a found name.
  """
  @spec resolve(:registry | :supervisor, String.t() | atom()) ::
          {:ok, atom()} | {:error, String.t()}
  def resolve(kind, name) when kind in [:registry, :supervisor] do
    known = Map.fetch!(local(), plural(kind))

    found =
      cond do
        is_atom(name) -> Enum.find(known, &(&1 == name))
        is_binary(name) -> Enum.find(known, &(inspect(&1) == name or Atom.to_string(&1) == name))
        true -> nil
      end

    case found do
      nil -> {:error, unknown(kind, name, known)}
      atom -> {:ok, atom}
    end
  end

  @doc "The message for an unknown name, listing the known ones."
  @spec unknown(:registry | :supervisor, term(), [atom()]) :: String.t()
  def unknown(kind, name, known) do
    text = if is_binary(name), do: String.slice(name, 0, 100), else: inspect(name, limit: 5)

    list =
      case known do
        [] -> "none runs on #{node()}"
        _ -> "known on #{node()}: " <> Enum.map_join(Enum.take(known, 20), ", ", &inspect/1)
      end

    "no Horde #{kind} named #{inspect(text)} (#{list})"
  end

  defp plural(:registry), do: :registries
  defp plural(:supervisor), do: :supervisors
end
