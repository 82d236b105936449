defmodule ClusterScope.Startable do
  @moduledoc """
  Which modules a request may start processes of (Horde placed starts,
  sandboxes). A start runs `module.function(args...)` with arguments from
  the request, so only the modules the host lists in the
  `:startable_modules` option (default none) are ever started: otherwise any
  exported function (`:os.cmd/1`, ...) would run on the node for whoever
  holds the admin token. Names are resolved to existing, loaded modules
  only: no atom is made from input.
  """

  @doc """
  The loaded module named by `text` (`MyApp.Worker`, `Elixir.MyApp.Worker`
  or `:erlang_module`) that the host allows: `{:ok, module}` or
  `{:error, message}`.
  """
  @spec resolve(String.t()) :: {:ok, module()} | {:error, String.t()}
  def resolve(text) when is_binary(text) do
    with {:ok, module} <- existing(text), do: allowed(module)
  end

  defp existing(text) do
    candidates =
      if String.starts_with?(text, ":"),
        do: [String.slice(text, 1..-1)],
        else: ["Elixir." <> text, text]

    Enum.find_value(
      candidates,
      {:error, "no loaded module #{inspect(text)} on #{node()}"},
      fn c ->
        try do
          atom = String.to_existing_atom(c)
          if Code.ensure_loaded?(atom), do: {:ok, atom}
        rescue
          ArgumentError -> nil
        end
      end
    )
  end

  defp allowed(module) do
    if module in ClusterScope.Config.get(:startable_modules),
      do: {:ok, module},
      else:
        {:error,
         "#{inspect(module)} is not in the startable_modules the host allows " <>
           "(config :cluster_scope, startable_modules: [...])"}
  end
end
