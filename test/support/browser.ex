defmodule ClusterScope.Test.Browser do
  @moduledoc """
  Drives Debian's `chromium` (headless, through `playwright-core` from npm,
  never a downloaded browser) for the `:browser` tests.

  One browser per test module: `start_supervised!(ClusterScope.Test.Browser)`
  in `setup_all` starts `node test/support/browser/driver.js`, which launches
  `/usr/bin/chromium --headless --no-sandbox --disable-background-networking`
  once. `open/2` makes a fresh page (its own context: cookies and
  sessionStorage do not leak between tests), `run/3` plays steps on it (see
  the step list at the top of `driver.js`) and returns their results, with
  the console errors collected so far. Screenshots go under
  `_build/browser-screenshots` (never committed).

  `available/0` says whether this machine can run them (chromium, node and
  `node_modules/playwright-core` present): `test/test_helper.exs` excludes
  `:browser` when it cannot, and under `CI=true` halts instead.
  """

  use GenServer

  @root Path.expand("../..", __DIR__)
  @driver Path.join(@root, "test/support/browser/driver.js")
  @chromium "/usr/bin/chromium"

  @typedoc "A page opened by `open/2`."
  @type page :: {pid(), pos_integer()}

  @doc "`:ok` when chromium, node and playwright-core are all here, else `{:error, why}`."
  @spec available() :: :ok | {:error, String.t()}
  def available do
    cond do
      not File.exists?(chromium()) ->
        {:error, "#{chromium()} is missing (make system-deps installs the chromium package)"}

      node_exe() == nil ->
        {:error, "node is missing (make system-deps installs nodejs)"}

      not File.dir?(Path.join(@root, "node_modules/playwright-core")) ->
        {:error, "node_modules/playwright-core is missing (run npm ci; make test does)"}

      true ->
        :ok
    end
  end

  @doc "The screenshot directory."
  @spec screenshot_dir() :: String.t()
  def screenshot_dir, do: Path.join(@root, "_build/browser-screenshots")

  defp chromium, do: System.get_env("CHROMIUM_PATH") || @chromium
  defp node_exe, do: System.find_executable("node") || System.find_executable("nodejs")

  @doc false
  def child_spec(opts) do
    %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, restart: :temporary}
  end

  @doc "Starts the driver (and, on the first page, the browser)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts)

  @doc "Opens a fresh page (1280x800 unless `viewport: {w, h}`)."
  @spec open(pid(), keyword()) :: page()
  def open(browser, opts \\ []) do
    {w, h} = Keyword.get(opts, :viewport, {1280, 800})

    case call(browser, %{cmd: "open", viewport: %{width: w, height: h}}) do
      %{"ok" => true, "page" => id} -> {browser, id}
      other -> raise "browser: could not open a page: #{inspect(other)}"
    end
  end

  @doc "Closes a page."
  @spec close(page()) :: :ok
  def close({browser, id}) do
    call(browser, %{cmd: "close", page: id})
    :ok
  end

  @doc """
  Plays `steps` (maps with an `op`, see `driver.js`) on a page. Returns
  `{:ok, results, console_errors}` or `{:error, failure}` where failure has
  the failing `step`, its `error`, a `screenshot` path and the console errors.
  """
  @spec run(page(), [map()], timeout()) :: {:ok, list(), list()} | {:error, map()}
  def run({browser, id}, steps, timeout \\ 60_000) do
    case call(browser, %{cmd: "run", page: id, steps: steps}, timeout) do
      %{"ok" => true, "results" => results, "console_errors" => errors} ->
        {:ok, results, errors}

      failure ->
        {:error, failure}
    end
  end

  @doc "Like `run/3` but raises with the failure (step, error, screenshot) and returns the results."
  @spec run!(page(), [map()], timeout()) :: list()
  def run!(page, steps, timeout \\ 60_000) do
    case run(page, steps, timeout) do
      {:ok, results, _errors} ->
        results

      {:error, failure} ->
        raise ExUnit.AssertionError,
          message:
            "browser step #{inspect(failure["step"])} (#{failure["op"]}) failed: " <>
              "#{failure["error"]}\nscreenshot: #{failure["screenshot"]}\n" <>
              "console errors: #{inspect(failure["console_errors"])}"
    end
  end

  @doc """
  Whether this build serves `GET /api/v1/stream` (Server-Sent Events). Until
  it does, the page polls the events cursor instead: its one probe of the
  stream answers 404, which chromium logs as a console error.
  """
  @spec stream_available?() :: boolean()
  def stream_available?, do: Code.ensure_loaded?(ClusterScope.Web.Stream)

  @doc """
  The console errors that are defects: all of them, except, in a build
  without the stream endpoint, chromium's line for the stream probe's 404.
  """
  @spec unexpected_errors(list()) :: list()
  def unexpected_errors(errors) do
    if stream_available?() do
      errors
    else
      Enum.reject(errors, fn e ->
        String.contains?(e["url"] || "", "/api/v1/stream") and
          String.contains?(e["text"] || "", "404")
      end)
    end
  end

  @doc "The console errors of a page since the last call (and forgets them)."
  @spec console_errors(page()) :: list()
  def console_errors(page) do
    [errors] = run!(page, [%{op: "console"}])
    errors
  end

  @doc """
  Starts an endpoint for a browser test on a loopback port (0 picks one):
  `Endpoint.start/1` with these options. Returns the endpoint map.
  """
  @spec start_endpoint(keyword()) :: ClusterScope.Web.Endpoint.t()
  def start_endpoint(opts \\ []) do
    {:ok, endpoint} = ClusterScope.Web.Endpoint.start(Keyword.put_new(opts, :port, 0))
    endpoint
  end

  @doc "Polls `fun` until it returns a truthy value (within `timeout` ms) and returns it."
  @spec eventually((() -> any()), non_neg_integer()) :: any()
  def eventually(fun, timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    do_eventually(fun, deadline)
  end

  defp do_eventually(fun, deadline) do
    case fun.() do
      value when value not in [nil, false] ->
        value

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          raise ExUnit.AssertionError, message: "condition not met in time"
        else
          Process.sleep(100)
          do_eventually(fun, deadline)
        end
    end
  end

  defp call(browser, request, timeout \\ 60_000) do
    GenServer.call(browser, {:request, request}, timeout + 5_000)
  end

  # GenServer: one port to the driver, requests matched to answers by ref.

  @impl true
  def init(_opts) do
    case available() do
      :ok ->
        port =
          Port.open({:spawn_executable, node_exe()}, [
            :binary,
            :exit_status,
            {:line, 65_536},
            args: [@driver],
            cd: @root,
            env: [{~c"SCREENSHOT_DIR", String.to_charlist(screenshot_dir())}]
          ])

        {:ok, %{port: port, waiting: %{}, next: 1, partial: ""}}

      {:error, why} ->
        {:stop, why}
    end
  end

  @impl true
  def handle_call({:request, request}, from, state) do
    ref = state.next
    line = ClusterScope.JSON.encode!(Map.put(request, :ref, ref))
    Port.command(state.port, [line, "\n"])
    {:noreply, %{state | next: ref + 1, waiting: Map.put(state.waiting, ref, from)}}
  end

  @impl true
  def handle_info({port, {:data, {:noeol, chunk}}}, %{port: port} = state) do
    {:noreply, %{state | partial: state.partial <> chunk}}
  end

  def handle_info({port, {:data, {:eol, chunk}}}, %{port: port} = state) do
    line = state.partial <> chunk
    state = %{state | partial: ""}

    case ClusterScope.JSON.decode(line) do
      {:ok, %{"ref" => ref} = answer} ->
        {from, waiting} = Map.pop(state.waiting, ref)
        if from, do: GenServer.reply(from, answer)
        {:noreply, %{state | waiting: waiting}}

      _ ->
        # Anything else on stdout (a library's log line) is shown, not parsed.
        IO.puts(:stderr, "browser driver: #{line}")
        {:noreply, state}
    end
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    for {_ref, from} <- state.waiting,
        do: GenServer.reply(from, %{"ok" => false, "error" => "driver exited #{status}"})

    {:stop, {:driver_exited, status}, state}
  end

  @impl true
  def terminate(_reason, %{port: port}) do
    # Closing stdin makes the driver close the browser and exit.
    if Port.info(port), do: Port.close(port)
    :ok
  catch
    _, _ -> :ok
  end
end
