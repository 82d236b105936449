defmodule ClusterScope.Health.SamplingOptions do
  @moduledoc """
  Validation of the health monitor's sampling settings
  (`ClusterScope.Health.configure_sampling/1`), as pure functions.

  | option             | values                         | default            |
  |--------------------|--------------------------------|--------------------|
  | `interval_ms`      | integer in 10..600000          | `health_interval_ms` |
  | `max_interval_ms`  | nil or integer in 10..3600000, at least `interval_ms` | 16 x `interval_ms` |
  | `cost_budget`      | number > 0 and <= 1 (fraction of one core) | 0.01   |
  | `scan_interval_ms` | integer in 100..3600000        | 10000              |

  Every bad option is reported with its field and a message; an unknown key
  is an error (its name is only read with `to_string/1`, never turned into
  an atom). Nothing changes unless every option is valid. O(number of
  options).
  """

  @typedoc "The settings the monitor keeps."
  @type t :: %{
          base_interval: pos_integer(),
          max_interval: pos_integer(),
          max_interval_set: pos_integer() | nil,
          budget: float(),
          scan_interval: pos_integer()
        }

  @typedoc "One validation error."
  @type error :: %{field: String.t(), message: String.t()}

  @default_budget 0.01
  @default_scan_interval_ms 10_000
  @max_factor 16

  @doc "The default settings for a configured interval of `base_ms`."
  @spec defaults(pos_integer()) :: t()
  def defaults(base_ms) do
    %{
      base_interval: base_ms,
      max_interval: base_ms * @max_factor,
      max_interval_set: nil,
      budget: @default_budget,
      scan_interval: @default_scan_interval_ms
    }
  end

  @doc "How many times the configured interval the interval may grow to by default."
  @spec max_factor() :: pos_integer()
  def max_factor, do: @max_factor

  @doc """
  Applies `opts` (a keyword list or map) to `settings`. Returns the new
  settings, or every error found.
  """
  @spec apply_changes(t(), keyword() | map()) :: {:ok, t()} | {:error, [error()]}
  def apply_changes(settings, opts) when is_list(opts) or is_map(opts) do
    if is_list(opts) and not Enum.all?(opts, &match?({_, _}, &1)) do
      {:error, [%{field: "opts", message: "must be a keyword list or :defaults"}]}
    else
      apply_pairs(settings, opts)
    end
  end

  def apply_changes(_settings, _opts),
    do: {:error, [%{field: "opts", message: "must be a keyword list or :defaults"}]}

  defp apply_pairs(settings, opts) do
    {settings, errors} =
      Enum.reduce(opts, {settings, []}, fn {key, value}, {settings, errors} ->
        case option(key, value, settings) do
          {:ok, settings} -> {settings, errors}
          {:error, message} -> {settings, [%{field: field(key), message: message} | errors]}
        end
      end)

    max = settings.max_interval_set || settings.base_interval * @max_factor

    errors =
      if max < settings.base_interval,
        do: [
          %{
            field: "max_interval_ms",
            message: "must be at least interval_ms (#{settings.base_interval})"
          }
          | errors
        ],
        else: errors

    case errors do
      [] -> {:ok, %{settings | max_interval: max}}
      _ -> {:error, Enum.reverse(errors)}
    end
  end

  defp field(key) when is_atom(key) or is_binary(key), do: to_string(key)
  defp field(key), do: inspect(key, limit: 5, printable_limit: 64)

  defp option(:interval_ms, v, s) when is_integer(v) and v in 10..600_000,
    do: {:ok, %{s | base_interval: v}}

  defp option(:interval_ms, v, _),
    do: {:error, "must be an integer in 10..600000, got: #{inspect(v)}"}

  defp option(:max_interval_ms, nil, s), do: {:ok, %{s | max_interval_set: nil}}

  defp option(:max_interval_ms, v, s) when is_integer(v) and v in 10..3_600_000,
    do: {:ok, %{s | max_interval_set: v}}

  defp option(:max_interval_ms, v, _),
    do: {:error, "must be nil or an integer in 10..3600000, got: #{inspect(v)}"}

  defp option(:cost_budget, v, s) when is_number(v) and v > 0 and v <= 1,
    do: {:ok, %{s | budget: v * 1.0}}

  defp option(:cost_budget, v, _),
    do: {:error, "must be a number > 0 and <= 1 (a fraction of one core), got: #{inspect(v)}"}

  defp option(:scan_interval_ms, v, s) when is_integer(v) and v in 100..3_600_000,
    do: {:ok, %{s | scan_interval: v}}

  defp option(:scan_interval_ms, v, _),
    do: {:error, "must be an integer in 100..3600000, got: #{inspect(v)}"}

  defp option(_key, _v, _s),
    do:
      {:error,
       "is not a sampling option (interval_ms, max_interval_ms, cost_budget, scan_interval_ms)"}
end
