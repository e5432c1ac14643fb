using System.Diagnostics;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Server.Batching;
using JacService.Server.Grpc;

namespace JacService.Server.Models;

/// <summary>
/// Sends a freshly loaded version a few requests of its own before it is marked ready: a Predict at every batch
/// bucket up to 64 rows and a Jacobian of one sample, through its batcher. The first call of each path otherwise pays for
/// building the plan of its shapes, AUTO's timing of both modes and the JIT's first compilation of every method on
/// the way, tens to hundreds of milliseconds that would land on the first callers after a start or a reload. The
/// calls leave no trace in the version's metrics, spans or batching stats (see ModelBatcher.WarmingUp).
/// Inputs are uniform in [0, 1). A version that fails its warm-up (a graph that evaluates for one sample but not for a
/// batch, say) is not served: every batch the batcher forms would fail the same way.
/// </summary>
public static class ModelWarmup
{
    /// <summary>Buckets past this are not warmed: a huge batch of a large model would cost more than its first call saves.</summary>
    public const int LargestRows = 64;

    /// <summary>What the warm-up did: ran (Failure null), failed (Failure says why), or was skipped (Skipped says why).</summary>
    public sealed record Outcome(string? Failure, string? Skipped);

    /// <summary>
    /// Runs the warm-up calls. <paramref name="served"/>: what AUTO had chosen on the snapshot this one takes over from
    /// (none at start), whose shapes are warmed too.
    /// </summary>
    public static async Task<Outcome> RunAsync(ModelEntry entry, IReadOnlyList<DerivativeChoice> served, CancellationToken cancellation)
    {
        var (model, batcher) = (entry.Model!, entry.Batcher!);
        // A dynamic axis past the batch axis has no size to warm up with; such models warm up on their first calls.
        if (model.Inputs.Any(i => i.Shape.Skip(1).Any(d => d < 0))) return new(null, "an input has a dynamic axis besides the batch axis");
        var rng = new Random(1);
        HostTensor[] Sample(int rows) => model.Inputs
            .Select(i => new HostTensor([rows, .. i.Shape[1..]], RandomValues(rng, rows * i.Shape.Skip(1).Aggregate(1L, (p, d) => p * d))))
            .ToArray();
        batcher.WarmingUp = true;
        try
        {
            foreach (int rows in batcher.Options.EffectiveBuckets().Where(b => b <= LargestRows))
            {
                var inputs = Sample(rows);
                await batcher.SubmitAsync(WorkKey.For(WorkKind.Predict, inputs), inputs, null, cancellation);
            }
            // A Jacobian with respect to the first float input, of every float output.
            int wrt = model.Inputs.ToList().FindIndex(i => i.ElementType.IsFloat());
            var of = model.ResolveOf([]);
            if (wrt < 0 || of.Length == 0) return new(null, null);
            var one = Sample(1);
            // The same limit a caller's Jacobian meets: a model whose one-sample Jacobian is too large is not sent one.
            if (model.ResultFloatsPerSample(one, wrt, of) * sizeof(float) > model.Limits.MaxResultBytes)
                return new(null, "a one-sample Jacobian of this model is over Limits:MaxResponseMiB");
            for (int call = 0; call < 2; call++)
                await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, one, wrt, of, entry.DefaultMode), one, null, cancellation);
            await WarmServedShapes(model, batcher, entry.DefaultMode, served, Sample, cancellation);
            return new(null, null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new(e.Message, null);
        }
        finally
        {
            batcher.WarmingUp = false;
        }
    }

    /// <summary>
    /// A Jacobian at each batch size (up to <see cref="LargestRows"/>) and wrt/of the replaced snapshot had AUTO time.
    /// Under load the batcher merges callers' Jacobians into batches of every size up to its maximum (unpadded unless
    /// Batching:PadToBucket), and the first batch of each size on a new snapshot would build its plan and time both modes
    /// while all its callers wait: under 16 callers the new version's first batch took 18-65 ms against a p99 of 8-17 ms
    /// before the take-over (11-21 ms when only the power-of-two sizes were warmed). Warming every size at every start
    /// instead would cost each start too (small_cnn's warm-up went from 0.1 to 3 s with the buckets alone); these are the
    /// sizes traffic reached. The cap bounds what is carried from version to version: at most one Jacobian per size up to
    /// 64 rows and wrt/of. A choice the new model cannot take (an input or output it no longer has, a result over the
    /// size limit) is left to its first call.
    /// </summary>
    private static async Task WarmServedShapes(ModelVersion model, ModelBatcher batcher, DerivativeMode mode, IReadOnlyList<DerivativeChoice> served,
        Func<int, HostTensor[]> sample, CancellationToken cancellation)
    {
        foreach (var choice in served.Where(c => c.Batch <= LargestRows))
        {
            int wrt = model.Inputs.ToList().FindIndex(i => i.Name == choice.Wrt && i.ElementType.IsFloat());
            var of = choice.Of.Select(name => model.Outputs.ToList().FindIndex(o => o.Name == name && o.ElementType.IsFloat())).ToArray();
            if (wrt < 0 || of.Length == 0 || of.Any(o => o < 0)) continue;
            var inputs = sample((int)choice.Batch);
            if (model.ResultFloatsPerSample(inputs, wrt, of) * choice.Batch * sizeof(float) > model.Limits.MaxResultBytes) continue;
            await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, inputs, wrt, of, mode), inputs, null, cancellation);
        }
    }

    private static float[] RandomValues(Random rng, long count)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = rng.NextSingle();
        return values;
    }
}
