defmodule ClusterScope.Web.Static do
  @moduledoc """
  Static files of the dashboard, from `priv/static` (written in this
  repository; no CDN). `/` serves `index.html`. Paths with `..`, `.`, empty
  segments, backslashes or NUL bytes are refused, so nothing outside
  `priv/static` can be read.
  """

  @types %{
    ".html" => "text/html; charset=utf-8",
    ".js" => "text/javascript; charset=utf-8",
    ".css" => "text/css; charset=utf-8",
    ".json" => "application/json",
    ".svg" => "image/svg+xml",
    ".png" => "image/png",
    ".ico" => "image/x-icon",
    ".txt" => "text/plain; charset=utf-8"
  }
  @max_file_bytes 4 * 1024 * 1024

  @doc "The content type and bytes of the file at a URL path, or `:error`."
  @spec fetch(String.t()) :: {:ok, String.t(), binary()} | :error
  def fetch(path) do
    with {:ok, segments} <- segments(path),
         file = Path.join([root() | segments]),
         {:ok, type} <- Map.fetch(@types, Path.extname(file)),
         {:ok, %File.Stat{type: :regular, size: size}} when size <= @max_file_bytes <-
           File.stat(file),
         {:ok, body} <- File.read(file) do
      {:ok, type, body}
    else
      _ -> :error
    end
  end

  @doc "The directory files are served from."
  @spec root() :: String.t()
  def root do
    case :code.priv_dir(:cluster_scope) do
      {:error, _} -> Path.expand("priv/static")
      dir -> Path.join(List.to_string(dir), "static")
    end
  end

  defp segments("/"), do: {:ok, ["index.html"]}

  defp segments("/" <> rest) do
    segments = rest |> String.split("/") |> Enum.map(&URI.decode/1)

    if Enum.all?(segments, &safe_segment?/1), do: {:ok, segments}, else: :error
  rescue
    ArgumentError -> :error
  end

  defp segments(_), do: :error

  defp safe_segment?(segment) do
    segment not in ["", ".", ".."] and String.valid?(segment) and
      not String.contains?(segment, ["\\", <<0>>, "/"])
  end
end
