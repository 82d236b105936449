defmodule ClusterScope.Agent.Processes.Grouped do
  @moduledoc """
  Process counts and memory by application, reading only what that
  grouping needs: each process's memory and group leader (one
  `process_info/2` with two items), summed per group leader by each
  walker (`ClusterScope.Agent.Processes.Walker`: one or two workers, ClusterScope's
  walk excluded), then group leaders turned into applications through the
  application masters once. No row is built and nothing is kept per
  process: the result is one small map per group leader.

  This answers `ClusterScope.Procs.distribution/1` on an agent node when
  it filters by nothing or by application only (other filters need a
  full snapshot), unless a full snapshot younger than `max_age_ms` is at
  hand. `ClusterScope.Agent.Processes.Snapshots` keeps the result for `max_age_ms`
  and shares it like a snapshot (source `{:groups, :application}`).

  Cost: the `memory` item makes every process handle a signal (as any
  read of a process's memory does, recon's included); the group leader
  comes with it for free. Memory: a map of group leaders per worker.
  """

  alias ClusterScope.Agent.Processes.{Rows, Walker}

  @typedoc "What a walk found: by application, `{count, memory}`, and how many processes."
  @type groups :: %{
          by_application: %{atom() => {non_neg_integer(), non_neg_integer()}},
          processes: non_neg_integer()
        }

  @doc "Whether a distribution with `filter` (normalized) can be answered from groups alone."
  @spec answers?(map()) :: boolean()
  def answers?(filter), do: Map.keys(filter) -- [:application] == []

  @doc """
  Walks every process (but the walk's own) reading memory and group
  leader. Returns `{:ok, groups, %{processes:, duration_us:, taken_at_ms:}}`.
  """
  @spec collect(keyword()) :: {:ok, groups(), map()} | {:error, term()}
  def collect(opts \\ []) do
    started = System.monotonic_time(:microsecond)

    with {:ok, maps} <- Walker.walk(fn -> %{} end, &add/2, opts) do
      by_leader = Enum.reduce(maps, %{}, &Map.merge(&1, &2, fn _, a, b -> sum(a, b) end))
      masters = Rows.context().masters

      by_application =
        Enum.reduce(by_leader, %{}, fn {gl, counts}, acc ->
          Map.update(acc, Map.get(masters, gl, :undefined), counts, &sum(&1, counts))
        end)

      processes = by_leader |> Map.values() |> Enum.map(&elem(&1, 0)) |> Enum.sum()

      {:ok, %{by_application: by_application, processes: processes},
       %{
         processes: processes,
         duration_us: System.monotonic_time(:microsecond) - started,
         taken_at_ms: div(started, 1000)
       }}
    end
  end

  defp sum({c1, m1}, {c2, m2}), do: {c1 + c2, m1 + m2}

  defp add(pids, acc), do: {:ok, add_each(pids, acc)}

  defp add_each([], acc), do: acc

  defp add_each([pid | rest], acc) do
    case :erlang.process_info(pid, [:memory, :group_leader]) do
      [{:memory, m}, {:group_leader, gl}] ->
        add_each(
          rest,
          case acc do
            %{^gl => {c, mem}} -> %{acc | gl => {c + 1, mem + m}}
            _ -> Map.put(acc, gl, {1, m})
          end
        )

      :undefined ->
        add_each(rest, acc)
    end
  end

  @doc """
  The distribution answer of one node from `groups`, keeping the
  applications that `filter` keeps: `%{process_count:, matched:, memory:,
  applications: [%{key:, count:, memory:}]}`, applications by count
  descending then name, as a summary's groups are.
  """
  @spec answer(groups(), map()) :: map()
  def answer(%{by_application: by_app, processes: processes}, filter) do
    entries =
      for {app, {count, memory}} <- by_app,
          key = Atom.to_string(app),
          filter[:application] in [nil, key],
          do: %{key: key, count: count, memory: memory}

    entries = Enum.sort_by(entries, &{-&1.count, &1.key})

    %{
      process_count: processes,
      matched: entries |> Enum.map(& &1.count) |> Enum.sum(),
      memory: entries |> Enum.map(& &1.memory) |> Enum.sum(),
      applications: entries
    }
  end
end
