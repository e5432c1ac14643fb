namespace JacService.Integration.Tests;

/// <summary>
/// A second server whose result limit is 1 MiB (so a few hundred MLP Jacobians are over it) and which serves
/// <c>slow_queue</c>, mlp_tanh with a fixed 10 s batching delay and room for 256 rows, so a lone request waits in the queue
/// far past any short deadline; a JacobianStream may have 3 requests in flight.
/// </summary>
public sealed class LimitedServer : IAsyncLifetime
{
    public const int MaxResponseMiB = 1;

    /// <summary>Limits:MaxStreamRequestsInFlight: how many of one JacobianStream's requests may wait in slow_queue.</summary>
    public const int StreamWindow = 3;

    public ServerProcess Server { get; } = new()
    {
        // No warm-up: the streaming tests plan what they call, and a start that warms every fixture is what slows the suite.
        ExtraArgs = [$"--Limits:MaxResponseMiB={MaxResponseMiB}", "--Models:Warmup=false", $"--Limits:MaxStreamRequestsInFlight={StreamWindow}"],
        PrepareRepository = root =>
        {
            var version = Path.Combine(root, "slow_queue", "1");
            Directory.CreateDirectory(version);
            File.Copy(Path.Combine(root, "mlp_tanh", "1", "model.onnx"), Path.Combine(version, "model.onnx"));
            File.WriteAllText(Path.Combine(root, "slow_queue", "config.json"),
                """{ "batching": { "maxQueueDelayMicroseconds": 10000000, "maxBatchSize": 256, "adaptiveDelay": false } }""");
        },
    };

    public Task InitializeAsync() => Server.InitializeAsync();

    public Task DisposeAsync() => Server.DisposeAsync();
}
