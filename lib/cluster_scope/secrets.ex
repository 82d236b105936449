defmodule ClusterScope.Secrets do
  @moduledoc """
  What this node must never let out: its cookies, the tokens of its HTTP
  endpoints and the values under the configured `redact_keys`, as
  `ClusterScope.Redact` rules. Every surface's answer goes through
  `redact/1` (the runner calls it), and node-side readers of states and
  trace arguments redact again where the term lives.
  """

  alias ClusterScope.{Config, Redact}

  @tokens_key {__MODULE__, :tokens}

  @doc "This node's redaction rules (cookies read now, so a new cookie is covered at once)."
  @spec rules() :: Redact.rules()
  def rules, do: Redact.rules(Config.get(:redact_keys), tokens())

  @doc "A term with this node's secrets redacted."
  @spec redact(term()) :: term()
  def redact(term), do: Redact.term(term, rules())

  @doc "The tokens of the configured endpoint and of every endpoint started here."
  @spec tokens() :: [binary()]
  def tokens do
    http = Config.get(:http)
    configured = for key <- [:token, :read_token], t = http[key], is_binary(t), do: t
    Enum.uniq(configured ++ :persistent_term.get(@tokens_key, []))
  end

  @doc false
  # Called by the endpoint when it starts: its tokens join the secrets for
  # as long as the node runs (a stopped endpoint's token stays secret).
  @spec add_tokens([binary() | nil]) :: :ok
  def add_tokens(tokens) do
    new = for t <- tokens, is_binary(t), do: t
    current = :persistent_term.get(@tokens_key, [])

    case Enum.uniq(current ++ new) do
      ^current -> :ok
      all -> :persistent_term.put(@tokens_key, all)
    end
  end
end
