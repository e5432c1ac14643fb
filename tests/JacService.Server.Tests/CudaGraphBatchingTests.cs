using System.Diagnostics.Metrics;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Models;
using JacService.Server.Telemetry;
using JacService.Testing;

namespace JacService.Server.Tests;

/// <summary>
/// The batcher and the metrics over a version whose passes are recorded as graphs, with <see cref="RerunRecorder"/>
/// standing in for CUDA graphs (no GPU here): batches are padded to their bucket when PadToBucket is unset, so one
/// graph serves every batch size of a bucket, the answers equal those of a version without graphs, and the
/// jacservice.cuda_graphs gauge counts what was recorded.
/// </summary>
public sealed class CudaGraphBatchingTests
{
    // Graphs record the interpreter's passes, which is what Jacobians run in on a GPU (compiled derivative graphs are the CPU's).
    private static ModelVersion Load() =>
        ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), new EngineLimits { CompileDerivatives = false });

    private static HostTensor[] Sample(int seed, int rows)
    {
        var rng = new Random(seed);
        return [new HostTensor([rows, 32], Enumerable.Range(0, rows * 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray())];
    }

    [Fact]
    public async Task GraphedBatchesArePaddedToTheirBucketAndAnswerAsEagerOnesDo()
    {
        using var meter = new Meter("JacService.Tests.CudaGraphs");
        var metrics = new JacServiceMetrics(meter);
        var registry = new ModelRegistry(TimeProvider.System);
        var graphed = Load();
        var recorder = new RerunRecorder();
        graphed.RecordPassesWith(recorder);
        var options = new BatchingOptions { MaxBatchSize = 8, ExecutorThreads = 1 };
        var batcher = new ModelBatcher(graphed, options, TimeProvider.System, metrics);
        registry.Set(new ModelEntry("mlp_tanh", 1, ModelState.Ready, "", new VersionLifetime(graphed, batcher)));
        metrics.ObserveRegistry(registry);
        using var eager = Load();
        await using var plain = new ModelBatcher(eager, options, TimeProvider.System, metrics);

        // Batches of 5, 6 and 7 rows all fall in bucket 8: one graph, recorded on the second batch, replayed after.
        foreach (int rows in new[] { 5, 6, 7, 5 })
        {
            var x = Sample(rows, rows);
            var key = WorkKey.For(WorkKind.Jacobian, x, 0, [0], Core.Derivatives.DerivativeMode.Reverse);
            var a = await batcher.SubmitAsync(key, x, null, CancellationToken.None);
            var b = await plain.SubmitAsync(key, x, null, CancellationToken.None);
            foreach (var (name, tensor) in b.Jacobians.Concat(b.Outputs))
            {
                var got = a.Jacobians.TryGetValue(name, out var j) && tensor.Shape.Length == 3 ? j : a.Outputs[name];
                Assert.Equal(tensor.Shape, got.Shape);
                float scale = tensor.Data.Max(MathF.Abs);
                for (int i = 0; i < tensor.Data.Length; i++)
                    Assert.True(MathF.Abs(tensor.Data[i] - got.Data[i]) <= 1e-6f * scale, $"{rows} rows, {name}[{i}]: {tensor.Data[i]} vs {got.Data[i]}");
            }
        }
        Assert.Equal(3 + 2 + 1 + 3, batcher.Executed.PaddedRows);
        Assert.Equal(0, plain.Executed.PaddedRows);
        // Recorded on the second batch, which replays it at once, as do the third and fourth.
        Assert.Equal((1, 3), (recorder.Recordings, recorder.Replays));

        var gauge = new Dictionary<string, int>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == meter && instrument.Name == "jacservice.cuda_graphs") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
            gauge[(string)tags.ToArray().Single(t => t.Key == "state").Value!] = value);
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(new Dictionary<string, int> { ["recorded"] = 1, ["eager"] = 0 }, gauge);
        registry.Dispose();
    }
}
