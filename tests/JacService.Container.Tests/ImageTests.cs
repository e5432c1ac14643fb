using Grpc.Health.V1;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>The real image serving every fixture model, compared with the torch / functorch float64 references.</summary>
[Collection(ImageCollection.Name)]
public sealed class ImageTests(ImageTests.FixtureServer fixture) : IClassFixture<ImageTests.FixtureServer>
{
    private const double Tolerance = 1e-4;
    private readonly ServerContainer _server = fixture.Server;

    public static TheoryData<string> Models => new(Fixtures.Names);

    /// <summary>One container for the whole class, serving tests/fixtures/models.</summary>
    public sealed class FixtureServer : IAsyncLifetime
    {
        public ServerContainer Server { get; private set; } = null!;

        public async Task InitializeAsync() => Server = await ServerContainer.StartAsync(Fixtures.ModelsDir);

        public async Task DisposeAsync()
        {
            if (Server is not null) await Server.DisposeAsync(); // null when the start failed
        }
    }

    internal static Tensor ToProto(RefTensor t) => JacService.Client.Tensors.Create(t.Floats, t.Shape);

    [Theory]
    [MemberData(nameof(Models))]
    public async Task PredictMatchesReference(string name)
    {
        var reference = Fixtures.Load(name);
        var request = new PredictRequest { Model = name };
        foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
        var response = await _server.Client.PredictAsync(request);
        foreach (var (output, expected) in reference.Outputs)
            Compare.Close(expected, response.Outputs[output].Shape.ToArray(), response.Outputs[output].Data, Tolerance, $"{name}.{output}");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task BatchJacobianMatchesReference(string name)
    {
        var reference = Fixtures.Load(name);
        foreach (var (wrt, perOutput) in reference.Jacobians)
        {
            var request = new BatchJacobianRequest { Model = name, Wrt = wrt };
            foreach (var (input, t) in reference.Inputs) request.Inputs[input] = ToProto(t);
            var response = await _server.Client.BatchJacobianAsync(request);
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, response.Jacobians[output].Shape.ToArray(), response.Jacobians[output].Data, Tolerance, $"{name} d{output}/d{wrt}");
        }
    }

    [Fact]
    public async Task PrometheusMetricsAreServedOnTheirOwnPort()
    {
        var request = new JacobianRequest { Model = "mlp_tanh" };
        request.Inputs["x"] = JacService.Client.Tensors.Create(new float[32], 32);
        await _server.Client.JacobianAsync(request);

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{_server.MetricsPort}/metrics");
        Assert.Contains("jacservice_requests_total{", text);
        Assert.Contains("method=\"Jacobian\"", text);
        Assert.Contains("jacservice_batch_size_count{", text);
        Assert.Contains("jacservice_models_loaded{", text);
    }

    [Fact]
    public async Task HealthIsServingOverGrpcAndInDocker()
    {
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, await _server.HealthAsync());

        // The image's HEALTHCHECK runs the bundled probe every 10 s; the first verdict comes after one interval.
        string status = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(40); DateTime.UtcNow < deadline; await Task.Delay(500))
        {
            status = ContainerEngine.Run("docker", ["inspect", "--format", "{{.State.Health.Status}}", _server.Container.Id]).Output.Trim();
            if (status != "starting") break;
        }
        Assert.True(status == "healthy", $"Docker health status '{status}':\n" +
            ContainerEngine.Run("docker", ["inspect", "--format", "{{json .State.Health}}", _server.Container.Id]).Output);
    }

    [Fact]
    public async Task RunsAsNonRootWithoutSdkOrForeignNatives()
    {
        var id = await _server.Container.ExecAsync(["id", "-u"]);
        Assert.Equal("1654", id.Stdout.Trim());

        // Runtime image only: no SDK, and no macOS/Windows natives from NuGet packages.
        var sdk = await _server.Container.ExecAsync(["sh", "-c", "ls /usr/share/dotnet; ls /usr/share/dotnet/sdk 2>/dev/null || true"]);
        Assert.DoesNotContain("sdk", sdk.Stdout);
        var foreign = await _server.Container.ExecAsync(["sh", "-c",
            "find / -xdev \\( -name '*.dylib' -o -name '*.exe' -o -path '*/runtimes/win*' -o -path '*/runtimes/osx*' \\) -print 2>/dev/null"]);
        Assert.Equal("", foreign.Stdout.Trim());

        // The root filesystem is read-only (as in the Helm chart) and the server still serves.
        var write = await _server.Container.ExecAsync(["sh", "-c", "touch /app/x"]);
        Assert.NotEqual(0, write.ExitCode);
    }

    [Fact]
    public void ImageStaysLean()
    {
        // A guard, not a benchmark: the CPU image is ~740 MB, libtorch_cpu.so alone 440 MB. Bringing in the SDK, or
        // the CUDA or non-Linux natives, would cross this line.
        long bytes = long.Parse(ContainerEngine.Run("docker", ["image", "inspect", "--format", "{{.Size}}", ContainerEngine.ImageName]).Output.Trim());
        Assert.True(bytes < 900L << 20, $"image is {bytes >> 20} MiB");
    }
}
