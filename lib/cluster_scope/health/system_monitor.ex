defmodule ClusterScope.Health.SystemMonitor do
  @moduledoc """
  The health monitor's use of `:erlang.system_monitor/2` to count busy
  distribution port events (a process suspended because a distribution
  buffer was full).

  There is one system monitor per VM: `install/1` takes the slot only when
  it is free (`:erlang.system_monitor()` is `:undefined`), never replaces
  another one, and gives it back if one appeared between the check and the
  install. `read/2` notices when another process took the slot later and
  stops counting (status `unavailable`, not reinstalled). `uninstall/2`
  frees the slot only if it is still ours.

  Each call is one or two BIFs (sub-microsecond). The functions take the
  owner pid so tests can call them directly from a test process.
  """

  @typedoc "Whether `owner` holds the slot, or why it does not."
  @type t :: :installed | {:unavailable, String.t()}

  @doc "Installs `owner` as the system monitor for `busy_dist_port` when the slot is free."
  @spec install(pid()) :: t()
  def install(owner \\ self()) do
    case :erlang.system_monitor() do
      :undefined ->
        case :erlang.system_monitor(owner, [:busy_dist_port]) do
          :undefined ->
            :installed

          {pid, opts} ->
            # Another process installed one between the check and ours: give
            # it back.
            :erlang.system_monitor(pid, opts)
            unavailable(pid)
        end

      {pid, _opts} ->
        unavailable(pid)
    end
  end

  @doc """
  The busy_dist_port section of a sample from the `events` counted since the
  last read, and the state to keep (`:installed`, or `unavailable` when
  another process replaced `owner` since).
  """
  @spec read(t(), non_neg_integer(), pid()) :: {t(), map()}
  def read(sysmon, events, owner \\ self())

  def read(:installed, events, owner) do
    case :erlang.system_monitor() do
      {^owner, _} ->
        {:installed, %{status: :installed, events: events}}

      other ->
        reason =
          "another system monitor replaced ClusterScope's (#{inspect(other, limit: 3)}); " <>
            "not reinstalled"

        read({:unavailable, reason}, events, owner)
    end
  end

  def read({:unavailable, reason} = sysmon, _events, _owner),
    do: {sysmon, %{status: :unavailable, events: nil, reason: reason}}

  @doc "Removes `owner`'s system monitor if it still holds the slot."
  @spec uninstall(t(), pid()) :: :ok
  def uninstall(sysmon, owner \\ self()) do
    if sysmon == :installed and match?({^owner, _}, :erlang.system_monitor()) do
      :erlang.system_monitor(:undefined)
    end

    :ok
  end

  @doc "The status shown in `ClusterScope.Health.status/0`."
  @spec status(t()) :: map()
  def status(:installed), do: %{status: :installed}
  def status({:unavailable, reason}), do: %{status: :unavailable, reason: reason}

  defp unavailable(pid),
    do: {:unavailable, "another system monitor is installed (#{inspect(pid)})"}
end
