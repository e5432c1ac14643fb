using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Models;
using JacService.Server.Telemetry;
using JacService.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// Leases and retirement on real snapshots (the MLP fixture): a call that resolved a version finishes on it whatever
/// replaces or removes it meanwhile, and a snapshot is freed exactly when its last call has ended.
/// </summary>
public sealed class ModelRegistryTests
{
    private static readonly byte[] Mlp = File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh"));
    private static readonly JacServiceMetrics Metrics = new(new System.Diagnostics.Metrics.Meter("JacService.Tests.Registry"));

    private static ModelEntry Snapshot(int version = 1)
    {
        var model = ModelVersion.Load("mlp", version, Mlp, new EngineLimits());
        return new ModelEntry("mlp", version, ModelState.Ready, "", new VersionLifetime(model,
            new ModelBatcher(model, new BatchingOptions { ExecutorThreads = 1 }, TimeProvider.System, Metrics)));
    }

    private static readonly HostTensor[] Input = [new HostTensor([1, 32], Enumerable.Range(0, 32).Select(i => i / 32f - 0.5f).ToArray())];

    private static Task<EngineResult> Predict(ModelLease lease) =>
        lease.Entry.Batcher!.SubmitAsync(WorkKey.For(WorkKind.Predict, Input), Input, null, CancellationToken.None);

    [Fact]
    public async Task ARemovedVersionServesTheCallsHoldingItAndIsFreedAfterTheLast()
    {
        var registry = new ModelRegistry(TimeProvider.System);
        var entry = registry.Set(Snapshot());
        float[] expected;
        using (var first = registry.Acquire("mlp", "")) expected = [.. (await Predict(first)).Outputs["y"].Data];

        var lease = registry.Acquire("mlp", "");
        var freed = registry.Remove("mlp", 1);
        Assert.Throws<ModelNotFoundException>(() => registry.Acquire("mlp", ""));
        Assert.Equal(1, registry.Retiring);
        await Task.Delay(100);
        Assert.False(freed.IsCompleted);
        // The call that resolved the version before it was removed still computes on it.
        Assert.Equal(expected, (await Predict(lease)).Outputs["y"].Data);

        lease.Dispose();
        await freed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(entry.Lifetime!.Freed.IsCompleted);
        Assert.Equal(0, registry.Retiring);
        lease.Dispose(); // a second dispose releases nothing more
    }

    [Fact]
    public async Task ANewSnapshotTakesOverAndTheOldOneIsFreedWhenItsCallsEnd()
    {
        var registry = new ModelRegistry(TimeProvider.System);
        var old = registry.Set(Snapshot(), "first");
        var held = registry.Acquire("mlp", "1");
        var replacement = registry.Set(Snapshot(), "reloaded: model.onnx changed");

        using (var fresh = registry.Acquire("mlp", "1"))
            Assert.Same(replacement.Lifetime, fresh.Entry.Lifetime);
        Assert.Equal(1, old.Lifetime!.Calls);
        Assert.False(old.Lifetime.Freed.IsCompleted);
        await Predict(held);
        held.Dispose();
        await old.Lifetime.Freed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(replacement.Lifetime!.Freed.IsCompleted);
        Assert.Equal(["first", "reloaded: model.onnx changed"], registry.Find("mlp", "1").History.Select(h => h.Note));
        await registry.ShutdownAsync(TimeSpan.Zero);
        Assert.True(replacement.Lifetime.Freed.IsCompleted);
    }

    [Fact]
    public async Task CallsRacingTakeOversAllSucceedOnALiveSnapshot()
    {
        var registry = new ModelRegistry(TimeProvider.System);
        var snapshots = new List<ModelEntry> { registry.Set(Snapshot(1)) };
        float[] expected;
        using (var first = registry.Acquire("mlp", "")) expected = [.. (await Predict(first)).Outputs["y"].Data];
        using var stop = new CancellationTokenSource();
        int calls = 0;
        var callers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var lease = registry.Acquire("mlp", "");
                Assert.False(lease.Entry.Lifetime!.Freed.IsCompleted);
                Assert.Equal(expected, (await Predict(lease)).Outputs["y"].Data);
                Interlocked.Increment(ref calls);
            }
        })).ToList();
        // Versions 2..11 take over one after another; each older one leaves the table.
        for (int version = 2; version <= 11; version++)
        {
            snapshots.Add(registry.Set(Snapshot(version)));
            await registry.Remove("mlp", version - 1).WaitAsync(TimeSpan.FromSeconds(10));
        }
        stop.Cancel();
        await Task.WhenAll(callers);
        Assert.True(calls > 20, $"{calls} calls");
        Assert.All(snapshots[..^1], s => Assert.True(s.Lifetime!.Freed.IsCompleted));
        Assert.Equal(11, registry.Find("mlp", "").Version);
        await registry.ShutdownAsync(TimeSpan.Zero);
    }
}
