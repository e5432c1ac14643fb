using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Container.Tests;

/// <summary>docker stop (SIGTERM) lets calls already accepted finish, then the server exits cleanly.</summary>
[Collection(ImageCollection.Name)]
public sealed class ShutdownTests
{
    [Fact]
    public async Task StopCompletesInFlightCalls()
    {
        // A 10 s queue delay keeps the calls waiting until the stop: only the drain on SIGTERM can answer them in time.
        await using var server = await ServerContainer.StartAsync(Fixtures.ModelsDir, new Dictionary<string, string>
        {
            ["Batching__MaxQueueDelayMicroseconds"] = "10000000",
            ["Batching__MaxBatchSize"] = "256",
            ["Batching__AdaptiveDelay"] = "false",
        });
        var reference = Fixtures.Load("mlp_tanh");
        var x = reference.Inputs["x"];
        var calls = Enumerable.Range(0, 3).Select(b => server.Client.JacobianAsync(
            new JacobianRequest { Model = "mlp_tanh", Inputs = { ["x"] = ImageTests.ToProto(x.Sample(b)) } }).ResponseAsync).ToList();

        long queued = 0;
        for (var wait = DateTime.UtcNow.AddSeconds(20); queued < 3 && DateTime.UtcNow < wait; await Task.Delay(50))
            queued = (await server.Client.GetModelAsync(new GetModelRequest { Model = "mlp_tanh" })).Batching.QueuedRows;
        Assert.Equal(3, queued);

        var stop = server.Container.StopAsync();
        var responses = await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(8));
        for (int b = 0; b < responses.Length; b++)
            Compare.Close(reference.Jacobians["x"]["y"].Sample(b), responses[b].Jacobians["y"].Shape.ToArray(),
                responses[b].Jacobians["y"].Data, 1e-4, $"sample {b}");

        await stop.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, await server.Container.GetExitCodeAsync());
        Assert.Contains("Application is shutting down", await server.LogsAsync());
    }
}
