defmodule ClusterScope.Browser.HeatmapTest do
  # The process distribution heat map in Debian's chromium: one cell per
  # node and application with its count (or memory); a click on a cell
  # opens the Processes view filtered to that node and application.
  use ExUnit.Case, async: false

  @moduletag :browser

  alias ClusterScope.Test.Browser

  setup_all do
    browser = start_supervised!(Browser)
    endpoint = Browser.start_endpoint(token: "browser-heatmap-token-0123456789")
    on_exit(fn -> ClusterScope.Web.Endpoint.stop(endpoint) end)
    %{browser: browser, endpoint: endpoint}
  end

  setup %{browser: browser} do
    page = Browser.open(browser)
    on_exit(fn -> Process.alive?(browser) && Browser.close(page) end)
    %{page: page}
  end

  test "a click on a cell lists that node's processes of that application",
       %{page: page, endpoint: ep} do
    me = Atom.to_string(node())
    cell = ~s(#heatmap-table td.vb-cell[data-node="#{me}"][data-app="kernel"])

    [_, _, _, count_text, _, _, memory_text, _] =
      Browser.run!(page, [
        %{op: "goto", url: ep.url <> "/#tab=heatmap"},
        %{op: "wait", selector: "body[data-ready=true]", state: "attached"},
        %{op: "wait", selector: cell},
        %{op: "text", selector: cell},
        %{op: "screenshot", name: "heatmap-count"},
        %{op: "click", selector: ".vb-heatmap label:has(input[value=memory]) span"},
        %{op: "text", selector: cell},
        %{op: "screenshot", name: "heatmap-memory"}
      ])

    # The count is the number of kernel processes here; memory is in bytes.
    {count, ""} = Integer.parse(String.replace(count_text, ",", ""))
    kernel_here = kernel_processes()
    assert count > 0 and abs(count - kernel_here) <= 5
    assert memory_text =~ ~r/\d+(\.\d)? (B|KiB|MiB|GiB)$/

    [_, _, _, rows, filters, hash] =
      Browser.run!(page, [
        %{op: "click", selector: cell},
        %{op: "wait", selector: "#tab-processes.active"},
        %{op: "wait", selector: "#process-table tr[data-pid]"},
        %{
          op: "eval",
          js:
            "() => [...document.querySelectorAll('#process-table tr[data-pid]')].map((tr) => [tr.dataset.node, tr.dataset.app])"
        },
        %{
          op: "eval",
          js:
            "() => [document.querySelector('[data-filter=node]').value, document.querySelector('[data-filter=application]').value]"
        },
        %{op: "eval", js: "() => decodeURIComponent(location.hash)"}
      ])

    assert rows != []
    assert Enum.all?(rows, &(&1 == [me, "kernel"]))
    assert filters == [me, "kernel"]
    assert hash =~ "procs.app=kernel"
    assert hash =~ "procs.node=#{me}"
    Browser.run!(page, [%{op: "screenshot", name: "heatmap-filtered-processes"}])
    assert Browser.unexpected_errors(Browser.console_errors(page)) == []
  end

  defp kernel_processes do
    Enum.count(Process.list(), fn pid ->
      with {:group_leader, gl} <- Process.info(pid, :group_leader),
           {:ok, app} <- application_of(gl) do
        app == :kernel
      else
        _ -> false
      end
    end)
  end

  defp application_of(gl) do
    Enum.find_value(:application.which_applications(), :error, fn {app, _, _} ->
      case :application_controller.get_master(app) do
        ^gl -> {:ok, app}
        _ -> nil
      end
    end)
  end
end
