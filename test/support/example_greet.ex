defmodule MyApp.Ops.Greet do
  @moduledoc false
  # The host-defined example operation of the README, verbatim.
  use ClusterScope.Operation, name: "greet"

  @impl true
  def rest_config do
    %{
      method: :get,
      path: "/api/v1/greet/:name",
      summary: "Greets someone from every node of the cluster",
      parameters: [
        %{
          name: :name,
          type: :string,
          required: true,
          location: :path,
          max_length: 50,
          description: "who to greet"
        },
        %{
          name: :shout,
          type: :boolean,
          required: false,
          default: false,
          location: :query,
          description: "upper case"
        }
      ],
      responses: %{200 => %{description: "the greeting"}}
    }
  end

  @impl true
  def execute(%{name: name, shout: shout}) do
    greeting = "Hello, #{name}, from #{node()}"
    {:ok, if(shout, do: String.upcase(greeting), else: greeting)}
  end

  @impl true
  def format_response(greeting), do: %{greeting: greeting}
end
