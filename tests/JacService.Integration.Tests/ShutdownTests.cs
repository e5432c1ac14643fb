using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>SIGTERM: the server stops taking calls, finishes what it accepted, then exits cleanly.</summary>
public class ShutdownTests
{
    [Fact]
    public async Task QueuedRequestsFinishAfterSigterm()
    {
        // A 10 s max delay (the allowed maximum) keeps the requests queued until the signal: only the drain can run them in time.
        await using var server = new ServerProcess { ExtraArgs = ["--Batching:MaxQueueDelayMicroseconds=10000000", "--Batching:MaxBatchSize=256", "--Batching:AdaptiveDelay=false"] };
        await server.InitializeAsync();
        var reference = Fixtures.Load("mlp_tanh");
        var x = reference.Inputs["x"];

        var calls = Enumerable.Range(0, 3).Select(b => server.Client.JacobianAsync(
            new JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = ServingTests.ToProto(x.Sample(b)) } }).ResponseAsync).ToList();
        long queued = 0;
        for (var wait = DateTime.UtcNow.AddSeconds(20); queued < 3 && DateTime.UtcNow < wait; await Task.Delay(50))
            queued = (await server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).Batching.QueuedRows;
        Assert.Equal(3, queued);

        server.Terminate();
        var responses = await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(8));
        for (int b = 0; b < responses.Length; b++)
            Compare.Close(reference.Jacobians["x"]["y"].Sample(b), responses[b].Jacobians["y"].Shape.ToArray(), responses[b].Jacobians["y"].Data, 1e-4, $"sample {b}");

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await server.WaitForExitAsync(timeout.Token);
        Assert.Equal(0, server.ExitCode);
    }
}
