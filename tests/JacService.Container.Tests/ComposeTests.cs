using System.Text.Json.Nodes;
using Grpc.Health.V1;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;
using YamlDotNet.RepresentationModel;

namespace JacService.Container.Tests;

/// <summary>
/// docker-compose.yml: the whole file must be valid, and the service must come up from it and answer. The Jaeger,
/// collector and Prometheus images cannot be pulled here, so only the service itself is started (--no-deps); the
/// wiring between them is checked in the rendered configuration instead.
/// </summary>
[Collection(ImageCollection.Name)]
public sealed class ComposeTests
{
    private static string ComposeFile => Path.Combine(Fixtures.Root, "docker-compose.yml");

    [Fact]
    public void ConfigIsValidAndWired()
    {
        ContainerEngine.Run("docker-compose", ["-f", ComposeFile, "config", "-q"]);
        var services = ContainerEngine.Run("docker-compose", ["-f", ComposeFile, "config", "--services"]).Output
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["jacservice", "jaeger", "otel-collector", "prometheus"], services.Order());

        var config = Yaml(ContainerEngine.Run("docker-compose", ["-f", ComposeFile, "config"]).Output);
        var service = Map(Map(config, "services"), "jacservice");
        Assert.Equal("http://otel-collector:4317", Scalar(Map(service, "environment"), "OTEL_EXPORTER_OTLP_ENDPOINT"));

        // Prometheus scrapes the service's metrics port under its compose name; the collector forwards traces to Jaeger.
        var prometheus = Yaml(File.ReadAllText(Path.Combine(Fixtures.Root, "deploy", "compose", "prometheus.yml")));
        var job = (YamlMappingNode)((YamlSequenceNode)prometheus.Children["scrape_configs"]).Children.Single();
        var targets = (YamlSequenceNode)((YamlMappingNode)((YamlSequenceNode)job.Children["static_configs"]).Children.Single()).Children["targets"];
        Assert.Equal("jacservice:9464", ((YamlScalarNode)targets.Children.Single()).Value);
        Assert.Equal("jacservice", Scalar(job, "job_name")); // the job the alerting rules select
        // Each rule file it names is a file of the repository mounted there (docker-compose 1.x writes volumes as
        // "host:container:mode").
        var mounts = ((YamlSequenceNode)Map(Map(config, "services"), "prometheus").Children["volumes"]).Children
            .Select(v => ((YamlScalarNode)v).Value!.Split(':')).ToDictionary(v => v[1], v => v[0]);
        var ruleFiles = ((YamlSequenceNode)prometheus.Children["rule_files"]).Children.Select(f => ((YamlScalarNode)f).Value!).ToList();
        Assert.NotEmpty(ruleFiles);
        Assert.All(ruleFiles, f => Assert.True(mounts.TryGetValue(f, out var host) && File.Exists(host), $"{f} is not a mounted file: {string.Join(", ", mounts)}"));
        var collector = Yaml(File.ReadAllText(Path.Combine(Fixtures.Root, "deploy", "compose", "otel-collector.yaml")));
        Assert.Equal("jaeger:4317", Scalar(Map(Map(collector, "exporters"), "otlp/jaeger"), "endpoint"));
    }

    [Fact]
    public async Task ServiceComesUpAndAnswersOnLocalhost()
    {
        var project = "jacservice-test-" + Guid.NewGuid().ToString("N")[..8];
        int port = FreePorts.Next(), restPort = FreePorts.Next();
        var env = new Dictionary<string, string>
        {
            ["JACSERVICE_IMAGE"] = ContainerEngine.ImageName,
            ["JACSERVICE_PORT"] = port.ToString(),
            ["JACSERVICE_METRICS_PORT"] = FreePorts.Next().ToString(),
            ["JACSERVICE_REST_PORT"] = restPort.ToString(),
        };
        string[] compose = ["-f", ComposeFile, "-p", project];
        try
        {
            ContainerEngine.Run("docker-compose", [.. compose, "up", "-d", "--no-deps", "--no-build", "jacservice"], env);

            using var channel = JacServiceChannel.Create($"http://127.0.0.1:{port}");
            await WaitUntilServing(new Health.HealthClient(channel), () =>
                ContainerEngine.Run("docker-compose", [.. compose, "logs", "--no-color"], env, allowFailure: true).Output);

            // The example repository (models/) holds the same pinn model as the fixtures.
            var client = new JacobianService.JacobianServiceClient(channel);
            var reference = Fixtures.Load("pinn");
            var request = new BatchJacobianRequest { Model = "pinn" };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ImageTests.ToProto(t);
            var response = await client.BatchJacobianAsync(request);
            foreach (var (output, expected) in reference.Jacobians.Values.Single())
                Compare.Close(expected, response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, 1e-4, $"pinn d{output}");
            foreach (var (output, expected) in reference.Outputs)
                Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, 1e-4, $"pinn {output}");

            // The Open Inference Protocol's REST binding on its published port.
            using var http = new HttpClient();
            var (wrt, xt) = reference.Inputs.Single();
            var body = new JsonObject
            {
                ["inputs"] = new JsonArray(new JsonObject
                {
                    ["name"] = wrt, ["datatype"] = "FP32",
                    ["shape"] = new JsonArray([.. xt.Shape.Select(d => (JsonNode)d)]),
                    ["data"] = new JsonArray([.. xt.Floats.Select(f => (JsonNode)f)]),
                }),
                ["parameters"] = new JsonObject { ["jacservice.derivative"] = "jacobian" },
            }.ToJsonString();
            var answer = await http.PostAsync($"http://127.0.0.1:{restPort}/v2/models/pinn/infer", new StringContent(body));
            using var json = System.Text.Json.JsonDocument.Parse(await answer.Content.ReadAsStringAsync());
            Assert.True(answer.IsSuccessStatusCode, json.RootElement.ToString());
            foreach (var (output, expected) in reference.Jacobians[wrt])
            {
                var tensor = json.RootElement.GetProperty("outputs").EnumerateArray().Single(o => o.GetProperty("name").GetString() == $"{output}__jacobian__{wrt}");
                Compare.Close(expected, tensor.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray(),
                    tensor.GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray(), 1e-4, $"pinn d{output} over REST");
            }
        }
        finally
        {
            ContainerEngine.Run("docker-compose", [.. compose, "down", "--volumes", "--remove-orphans"], env, allowFailure: true);
        }
    }

    private static async Task WaitUntilServing(Health.HealthClient health, Func<string> logs)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(90); DateTime.UtcNow < deadline; await Task.Delay(250))
        {
            try
            {
                var reply = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(3));
                if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving) return;
            }
            catch (Grpc.Core.RpcException)
            {
                // Not listening yet.
            }
        }
        throw new TimeoutException("compose service not SERVING:\n" + logs());
    }

    private static YamlMappingNode Yaml(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node.Children[key];

    private static string? Scalar(YamlMappingNode node, string key) => ((YamlScalarNode)node.Children[key]).Value;
}
