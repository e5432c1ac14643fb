using System.Diagnostics.Metrics;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Telemetry;
using JacService.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// A version with a replica per device (Engine:Device naming several GPUs), with CPU replicas standing in for the GPUs:
/// every replica's executors take batches from the one queue, so concurrent callers' batches spread over all of them;
/// the answers equal those of the engine called directly; AUTO's choices are made once for all replicas; and a warm-up
/// batch runs on every replica, so each has recorded its graphs before the version takes callers.
/// </summary>
public sealed class ReplicaBatchingTests
{
    private static readonly byte[] Bytes = File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh"));

    // Replicas stand in for GPUs, where Jacobians run in the interpreter (compiled derivative graphs are the CPU's).
    private static readonly EngineLimits OnAGpu = new() { CompileDerivatives = false };

    private static ModelReplicas Replicas(int count)
    {
        var all = new List<ModelVersion> { ModelVersion.Load("mlp_tanh", 1, Bytes, OnAGpu) };
        while (all.Count < count) all.Add(ModelVersion.Load("mlp_tanh", 1, Bytes, OnAGpu, replicaOf: all[0]));
        return ModelReplicas.Of(all);
    }

    private static HostTensor[] Sample(int seed, int rows)
    {
        var rng = new Random(seed);
        return [new HostTensor([rows, 32], Enumerable.Range(0, rows * 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray())];
    }

    private static void AssertClose(HostTensor expected, HostTensor actual, string what) => HostTensorAssert.Close(expected, actual, 1e-5f, what);

    [Fact]
    public async Task ConcurrentBatchesSpreadOverEveryReplicaAndAnswerAsTheEngineDoes()
    {
        using var meter = new Meter("JacService.Tests.Replicas");
        using var replicas = Replicas(3);
        var options = new BatchingOptions { MaxBatchSize = 4, ExecutorThreads = 1 };
        await using var batcher = new ModelBatcher(replicas, options, TimeProvider.System, new JacServiceMetrics(meter));
        using var reference = ModelVersion.Load("mlp_tanh", 1, Bytes, new EngineLimits());

        // 12 callers, 20 requests each of 1-3 rows, in both modes: far more work than one executor thread keeps up with.
        var calls = Enumerable.Range(0, 12).Select(caller => Task.Run(async () =>
        {
            for (int i = 0; i < 20; i++)
            {
                int seed = caller * 100 + i;
                var x = Sample(seed, 1 + seed % 3);
                var mode = seed % 2 == 0 ? DerivativeMode.Forward : DerivativeMode.Reverse;
                var got = await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, x, 0, [0], mode), x, null, CancellationToken.None);
                var want = Engine(reference, x, mode);
                AssertClose(want.Outputs["y"], got.Outputs["y"], $"caller {caller} call {i} output");
                AssertClose(want.Jacobians.Values.Single(), got.Jacobians.Values.Single(), $"caller {caller} call {i} jacobian");
            }
        })).ToArray();
        await Task.WhenAll(calls);

        var on = batcher.ExecutedOn;
        Assert.Equal(3, on.Count);
        Assert.All(on, d => Assert.True(d.Batches > 0, $"replica on {d.Device} ran no batch: {string.Join(", ", on)}"));
        Assert.Equal(batcher.Executed.Batches, on.Sum(d => d.Batches));
        Assert.Equal(batcher.Executed.Rows, on.Sum(d => d.Rows));
        Assert.Equal(Enumerable.Range(0, 12).Sum(c => Enumerable.Range(0, 20).Sum(i => 1 + (c * 100 + i) % 3)), on.Sum(d => d.Rows));
    }

    /// <summary>The engine called directly, as an executor thread calls it.</summary>
    private static EngineResult Engine(ModelVersion model, HostTensor[] x, DerivativeMode mode)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var inference = TorchSharp.torch.inference_mode();
        return model.Jacobian(x, 0, [0], mode);
    }

    [Fact]
    public async Task AutoChoosesOnceForEveryReplica()
    {
        using var meter = new Meter("JacService.Tests.Replicas");
        using var replicas = Replicas(2);
        await using var batcher = new ModelBatcher(replicas, new BatchingOptions { MaxBatchSize = 8, ExecutorThreads = 1 },
            TimeProvider.System, new JacServiceMetrics(meter));

        var x = Sample(1, 8);
        await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, x, 0, [0], DerivativeMode.Auto), x, null, CancellationToken.None);

        var choice = Assert.Single(replicas.All[0].DerivativeChoices);
        Assert.Equal(8, choice.Batch);
        Assert.Equal([choice], replicas.All[1].DerivativeChoices);
    }

    [Fact]
    public async Task AWarmupBatchRunsOnEveryReplica()
    {
        using var meter = new Meter("JacService.Tests.Replicas");
        using var replicas = Replicas(3);
        var recorders = replicas.All.Select(r =>
        {
            var recorder = new RerunRecorder();
            r.RecordPassesWith(recorder);
            return recorder;
        }).ToArray();
        await using var batcher = new ModelBatcher(replicas, new BatchingOptions { MaxBatchSize = 8, ExecutorThreads = 1 },
            TimeProvider.System, new JacServiceMetrics(meter)) { WarmingUp = true };

        // A pass is recorded on its second run: two warm-up calls leave every replica with its graph.
        var x = Sample(2, 4);
        for (int i = 0; i < 2; i++)
            await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, x, 0, [0], DerivativeMode.Reverse), x, null, CancellationToken.None);

        Assert.All(recorders, r => Assert.Equal(1, r.Recordings));
        Assert.All(replicas.All, r => Assert.Equal(1, r.Graphs.Recorded));
        // The warm-up is the server's own work: nothing counted.
        Assert.All(batcher.ExecutedOn, d => Assert.Equal(0, d.Batches));
    }
}
