defmodule ClusterScope.Test.Setup do
  @moduledoc """
  What `test/test_helper.exs` decides before ExUnit starts: which tags are
  excluded, and whether the run must stop instead.

  Outside CI a missing capability skips the tests that need it, with a
  line saying why. Under `CI=true` (the Makefile's `make test` on a CI
  machine, as root with iptables installed) nothing may be skipped for a
  missing capability: a `:cluster` or `:chaos` test that cannot run is a
  broken setup, and the run halts with a message naming what is missing.
  """

  @typedoc "A capability check: `:ok` or `{:error, reason}`."
  @type check :: :ok | {:error, term()}

  @doc """
  Decides the exclusions from the base list, whether this is CI, and the
  outcome of starting distribution and of the chaos check (a function, run
  only when distribution works).

  Returns `{:run, exclude, notices}` (notices are lines to print) or
  `{:halt, message}`.
  """
  @spec decide([atom()], boolean(), check(), (() -> check())) ::
          {:run, [atom()], [String.t()]} | {:halt, String.t()}
  def decide(exclude, ci?, distribution, chaos_check) do
    case distribution do
      :ok ->
        case chaos_check.() do
          :ok ->
            {:run, exclude, []}

          {:error, reason} ->
            skip(exclude, ci?, [:chaos], "#{reason(reason)}")
        end

      {:error, reason} ->
        skip(exclude, ci?, [:cluster, :chaos], "distribution unavailable (#{reason(reason)})")
    end
  end

  defp skip(_exclude, true, tags, why) do
    {:halt,
     "CI=true: the #{Enum.map_join(tags, " and ", &inspect/1)} tests must run, but " <>
       why <> ". Fix the machine (make system-deps as root, epmd, iptables) instead of skipping."}
  end

  defp skip(exclude, false, tags, why) do
    {:run, tags ++ exclude,
     ["Skipping #{Enum.map_join(tags, " and ", &inspect/1)} tests: #{why}"]}
  end

  defp reason(text) when is_binary(text), do: text
  defp reason(other), do: inspect(other)

  @doc """
  Adds to `exclude` the tag of each optional integration whose library is
  not loadable (`[libcluster: Code.ensure_loaded?(Cluster.Strategy)]`),
  with a line saying so. Never halts, even under `CI=true`: CI runs without
  the optional libraries by design and tests their unavailable paths in
  untagged tests; the tagged ones run when the libraries are on the code
  path (for example `ERL_LIBS=/path/to/built/libs mix test`).

  Returns `{exclude, notices}`.
  """
  @spec optional([atom()], [{atom(), boolean()}]) :: {[atom()], [String.t()]}
  def optional(exclude, available) do
    Enum.reduce(available, {exclude, []}, fn
      {_tag, true}, acc ->
        acc

      {tag, false}, {exclude, notices} ->
        {exclude ++ [tag],
         notices ++
           [
             "Skipping #{inspect(tag)} tests: the #{tag} library is not loadable " <>
               "(put it on the code path, e.g. ERL_LIBS, to run them)"
           ]}
    end)
  end

  @doc "Whether this run is a CI run (`CI=true`)."
  @spec ci?() :: boolean()
  def ci?, do: System.get_env("CI") == "true"
end
