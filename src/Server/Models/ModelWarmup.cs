using System.Diagnostics;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Grpc;

namespace JacService.Server.Models;

/// <summary>
/// Sends a freshly loaded version a few requests of its own before it is marked ready: a Predict at every batch
/// bucket up to 64 rows and a Jacobian of one sample, through its batcher. The first call of each path otherwise pays for
/// building the plan of its shapes, AUTO's timing of both modes and the JIT's first compilation of every method on
/// the way, tens to hundreds of milliseconds that would land on the first callers after a start or a reload. The
/// calls leave no trace in the version's metrics, spans or batching stats (see ModelBatcher.WarmingUp).
/// Inputs are uniform in [0, 1); a model that fails on them is still served (the failure is logged).
/// </summary>
public static class ModelWarmup
{
    /// <summary>Buckets past this are not warmed: a huge batch of a large model would cost more than its first call saves.</summary>
    public const int LargestRows = 64;

    /// <summary>Runs the warm-up calls; returns what failed, or null.</summary>
    public static async Task<string?> RunAsync(ModelEntry entry, CancellationToken cancellation)
    {
        var (model, batcher) = (entry.Model!, entry.Batcher!);
        // A dynamic axis past the batch axis has no size to warm up with; such models warm up on their first calls.
        if (model.Inputs.Any(i => i.Shape.Skip(1).Any(d => d < 0))) return "an input has a dynamic axis besides the batch axis";
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
            var one = Sample(1);
            int[] of = [.. Enumerable.Range(0, model.Outputs.Count)];
            for (int call = 0; call < 2; call++)
                await batcher.SubmitAsync(WorkKey.For(WorkKind.Jacobian, one, 0, of, entry.DefaultMode), one, null, cancellation);
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return e.Message;
        }
        finally
        {
            batcher.WarmingUp = false;
        }
    }

    private static float[] RandomValues(Random rng, long count)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = rng.NextSingle();
        return values;
    }
}
