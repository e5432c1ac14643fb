using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>A bad setting stops the server at start with a message that names it, instead of serving half-configured.</summary>
public class StartupSettingsTests
{
    [Fact]
    public async Task MetricsOnTheGrpcPortIsRefused()
    {
        int port = FreePorts.Next();
        var message = await StartFails("--urls", $"http://127.0.0.1:{port}", $"--Telemetry:MetricsUrl=http://127.0.0.1:{port}");
        Assert.Contains($"Telemetry:MetricsUrl 'http://127.0.0.1:{port}' uses the port of the gRPC address", message);
    }

    [Fact]
    public async Task AMetricsUrlThatIsNotHttpHostPortIsRefused()
    {
        var message = await StartFails("--Telemetry:MetricsUrl=https://127.0.0.1:9464/metrics");
        Assert.Contains("Telemetry:MetricsUrl must be http://HOST:PORT or empty", message);
    }

    /// <summary>The REST binding's address: a port of its own, http://HOST:PORT, or https:// naming a Kestrel endpoint's port.</summary>
    [Theory]
    [InlineData("metrics", "OpenInference:RestUrl 'http://127.0.0.1:{metrics}' uses the metrics port; give the REST binding a port of its own")]
    [InlineData("grpc", "OpenInference:RestUrl 'http://127.0.0.1:{grpc}' uses the port of the gRPC address")]
    [InlineData("https", "OpenInference:RestUrl 'https://127.0.0.1:{free}' is https: it names the port of a Kestrel:Endpoints entry, which carries the certificate, and none has port {free}")]
    [InlineData("path", "OpenInference:RestUrl must be http://HOST:PORT or empty (give no path); got 'http://127.0.0.1:{free}/v2'")]
    public async Task ARestUrlWithoutAPortOfItsOwnIsRefused(string problem, string expected)
    {
        int grpc = FreePorts.Next(), metrics = FreePorts.Next(), free = FreePorts.Next();
        string url = problem switch
        {
            "metrics" => $"http://127.0.0.1:{metrics}",
            "grpc" => $"http://127.0.0.1:{grpc}",
            "https" => $"https://127.0.0.1:{free}",
            _ => $"http://127.0.0.1:{free}/v2",
        };
        var message = await StartFails("--urls", $"http://127.0.0.1:{grpc}", $"--Telemetry:MetricsUrl=http://127.0.0.1:{metrics}", $"--OpenInference:RestUrl={url}");
        Assert.Contains(expected.Replace("{metrics}", $"{metrics}").Replace("{grpc}", $"{grpc}").Replace("{free}", $"{free}"), message);
    }

    [Fact]
    public async Task AnOutOfRangeBatchSizeIsRefused()
    {
        var message = await StartFails("--Batching:MaxBatchSize=0");
        Assert.Contains("MaxBatchSize", message);
    }

    [Fact]
    public async Task AKestrelLimitKestrelRefusesIsNamed()
    {
        var message = await StartFails("--Kestrel:Limits:MaxConcurrentConnections=-1");
        Assert.Contains("Kestrel:Limits:MaxConcurrentConnections is refused: Value must be null or a positive number", message);
    }

    [Theory]
    [InlineData("cuda", "Engine:Device 'cuda' cannot be served: 'cuda' asks for a GPU, but CUDA is not available to this process")]
    [InlineData("cuda:0,cuda:1", "Engine:Device 'cuda:0,cuda:1' cannot be served: 'cuda:0' asks for a GPU")]
    [InlineData("gpu", "Engine:Device 'gpu' cannot be served: 'gpu' is not a device")]
    public async Task ADeviceThisProcessCannotReachIsRefused(string device, string expected)
    {
        var message = await StartFails($"--Engine:Device={device}");
        Assert.Contains(expected, message);
    }

    [Fact]
    public async Task CudaGraphsOnWhereTheyCannotRunAreRefused()
    {
        var message = await StartFails("--Engine:CudaGraphs=on");
        Assert.Contains("Engine:CudaGraphs is on, but graphs cannot run here: the device is the CPU; set it to auto or off", message);
    }

    private static async Task<string> StartFails(params string[] args)
    {
        await using var server = new ServerProcess { ExtraArgs = args };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(server.InitializeAsync);
        Assert.StartsWith("server exited with", e.Message);
        // The exit can be seen before the last lines of stderr are read; waiting for the exit drains them.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await server.WaitForExitAsync(timeout.Token);
        return server.Log;
    }
}
