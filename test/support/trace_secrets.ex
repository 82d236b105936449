defmodule TestApp.Login do
  @moduledoc false
  # Functions a host could trace that receive secrets as arguments, like
  # `:crypto.hash_equals/2` comparing a bearer token.

  def check(given, expected), do: {given == expected, expected}

  def login(opts) when is_list(opts), do: {:ok, Keyword.get(opts, :user)}
end
