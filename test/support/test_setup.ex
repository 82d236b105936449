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
  Excludes the tag of each optional integration whose module cannot be
  loaded here (`[{tag, module}]`, for example `{:arsenal, Arsenal.Registry}`):
  its tests run whenever the library is on the code path (`ERL_LIBS`), and
  are skipped with a notice otherwise, CI or not (CI has no such library:
  it runs the "unavailable" path). Returns `{exclude, notices}`.
  """
  @spec optional([atom()], [{atom(), module()}], (module() -> boolean())) ::
          {[atom()], [String.t()]}
  def optional(exclude, integrations, loadable? \\ &Code.ensure_loaded?/1) do
    Enum.reduce(integrations, {exclude, []}, fn {tag, module}, {exclude, notices} ->
      if loadable?.(module) do
        {exclude, notices}
      else
        {[tag | exclude],
         notices ++ ["Skipping #{inspect(tag)} tests: #{inspect(module)} is not loadable"]}
      end
    end)
  end

  @doc "Whether this run is a CI run (`CI=true`)."
  @spec ci?() :: boolean()
  def ci?, do: System.get_env("CI") == "true"

  @doc """
  Decides whether the `:browser` tests run: `check` is
  `ClusterScope.Test.Browser.available/0` (chromium, node and
  `node_modules/playwright-core`). Available: `:browser` is taken out of the
  exclusions (`make test` runs them). Missing outside CI: excluded with a
  notice. Missing under `CI=true`: `{:halt, message}`, like `:cluster`.
  """
  @spec browser([atom()], boolean(), check()) ::
          {:run, [atom()], [String.t()]} | {:halt, String.t()}
  def browser(exclude, ci?, check) do
    case check do
      :ok ->
        {:run, List.delete(exclude, :browser), []}

      {:error, why} ->
        if ci?,
          do:
            {:halt,
             "CI=true: the :browser tests must run, but #{reason(why)}. " <>
               "Fix the machine (make system-deps as root, npm ci) instead of skipping."},
          else:
            {:run, Enum.uniq([:browser | exclude]), ["Skipping :browser tests: #{reason(why)}"]}
    end
  end
end
