using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>
/// Sends a freshly loaded version requests of its own before it is marked ready, through its batcher: a Predict and a
/// Jacobian in the version's default mode at every batch bucket up to Models:WarmupMaxRows, then one sample and two of a
/// Jvp and a Vjp, and one of a Hessian and a Laplacian where every op on the path has a second-order rule.
/// The first call of each path otherwise pays for building the plan of its shapes, AUTO's timing of both modes at
/// that batch size and the JIT's first compilation of every method on the way, tens to hundreds of milliseconds that
/// would land on the first callers after a start or a take-over. The calls leave no trace in the version's metrics,
/// spans or batching stats (see ModelBatcher.WarmingUp). Inputs are uniform in [0, 1). A version that fails its warm-up
/// (a graph that evaluates for one sample but not for a batch, say) is not served: callers' batches would fail the
/// same way. A derivative the engine refuses for this model (no second-order rule, a result over the size limit) is
/// not warmed and is no failure: callers get the same refusal.
/// </summary>
public static class ModelWarmup
{
    /// <summary>
    /// Second derivatives are warmed only up to this many elements of wrt: their cost grows with its size (a Hessian
    /// of a 784-pixel image takes seconds) while what the warm-up saves (planning, JIT) does not. PINN inputs are a few
    /// coordinates.
    /// </summary>
    public const int SecondOrderMaxInputs = 64;

    /// <summary>The largest batch size carried from a version to the one that takes over from it (see WarmServedShapes).</summary>
    public const int ServedShapesMaxRows = 64;

    /// <summary>What the warm-up did: ran (Failure null), failed (Failure says why), or was skipped (Skipped says why).</summary>
    public sealed record Outcome(string? Failure, string? Skipped, IReadOnlyList<string> NotWarmed);

    /// <summary>
    /// Runs the warm-up calls. <paramref name="served"/>: what AUTO had chosen on the snapshot this one takes over from
    /// (none at start), whose shapes are warmed too.
    /// </summary>
    public static async Task<Outcome> RunAsync(ModelEntry entry, int maxRows, IReadOnlyList<DerivativeChoice> served, CancellationToken cancellation)
    {
        var (model, batcher) = (entry.Model!, entry.Batcher!);
        // A dynamic axis past the batch axis has no size to warm up with; such models warm up on their first calls.
        if (model.Inputs.Any(i => i.Shape.Skip(1).Any(d => d < 0))) return new(null, "an input has a dynamic axis besides the batch axis", []);
        var rng = new Random(1);
        HostTensor Random(long[] shape) => new(shape, RandomValues(rng, shape.Aggregate(1L, (p, d) => p * d)));
        HostTensor[] Sample(int rows) => model.Inputs.Select(i => Random([rows, .. i.Shape[1..]])).ToArray();
        Task<EngineResult> Send(WorkKind kind, HostTensor[] queued, int wrt = -1, int[]? of = null, DerivativeMode mode = DerivativeMode.Auto, int[]? axes = null) =>
            batcher.SubmitAsync(WorkKey.For(kind, queued, wrt, of, mode, axes: axes), queued, null, cancellation);

        var buckets = batcher.Options.EffectiveBuckets().Where(b => b <= maxRows).DefaultIfEmpty(1).ToArray();
        var notWarmed = new List<string>();
        batcher.WarmingUp = true;
        try
        {
            // Twice with CUDA graphs: the second run of a shape records its graph.
            int predictCalls = model.Graphs.Enabled ? 2 : 1;
            foreach (int rows in buckets)
                for (int call = 0; call < predictCalls; call++) await Send(WorkKind.Predict, Sample(rows));

            // Derivatives with respect to the first float input, of every float output: what a request naming neither gets.
            int wrt = model.Inputs.ToList().FindIndex(i => i.ElementType.IsFloat());
            var of = model.ResolveOf([]);
            if (wrt < 0 || of.Length == 0) return new(null, null, ["derivatives (no float input or output)"]);
            var one = Sample(1);
            // The same limit a caller's request meets: a bucket whose Jacobian is too large is not sent one, nor any larger.
            long jacobianBytes = model.ResultFloatsPerSample(one, wrt, of) * sizeof(float);
            foreach (int rows in buckets)
            {
                if (rows * jacobianBytes > model.Limits.MaxResultBytes)
                {
                    notWarmed.Add($"Jacobians of {rows} rows and more (over Limits:MaxResponseMiB)");
                    break;
                }
                var inputs = Sample(rows);
                // Twice: under AUTO the first call times both modes at this batch size, the second runs the one chosen (and with
                // CUDA graphs records its graph).
                for (int call = 0; call < 2; call++) await Send(WorkKind.Jacobian, inputs, wrt, of, entry.DefaultMode);
            }
            // One direction of one sample and of two: results the size of the outputs, within the limit. Two, because a
            // compiled graph is checked against the interpreter on its first batch of one row and its first of more; a
            // caller's first batch of more rows would otherwise wait for the interpreter's whole pass at its size.
            foreach (int rows in new[] { 1, 2 }.Where(r => r <= Math.Max(1, maxRows)))
            {
                var inputs = Sample(rows);
                await Send(WorkKind.Jvp, [.. inputs, Random(inputs[wrt].Shape)], wrt, of, DerivativeMode.Forward);
                await Send(WorkKind.Vjp, [.. inputs, .. of.Select(o => Random([rows, .. model.OutputSampleShape(one, o)]))], wrt, of, DerivativeMode.Reverse);
            }
            if (SecondOrderRefusal(model, one, wrt, of) is { } refusal)
            {
                notWarmed.Add($"second derivatives ({refusal})");
            }
            else
            {
                await Send(WorkKind.Hessian, one, wrt, of, DerivativeMode.Forward);
                await Send(WorkKind.Laplacian, one, wrt, of, DerivativeMode.Forward, model.Requests.ResolveAxes([], one, wrt));
            }
            await WarmServedShapes(model, batcher, entry.DefaultMode, served, Sample, cancellation);
            return new(null, null, notWarmed);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new(NativeErrors.Trim(e.Message), null, notWarmed);
        }
        finally
        {
            batcher.WarmingUp = false;
        }
    }

    /// <summary>Why a caller's one-sample Hessian would be refused, or null when it would run.</summary>
    private static string? SecondOrderRefusal(ModelVersion model, HostTensor[] one, int wrt, int[] of)
    {
        if (one[wrt].Shape[1..].Aggregate(1L, (p, d) => p * d) > SecondOrderMaxInputs)
            return $"'{model.Inputs[wrt].Name}' has over {SecondOrderMaxInputs} elements; the first call plans them";
        try
        {
            model.CheckSecondOrder(wrt, of);
            model.CheckSecondOrderSize(one, wrt, of, SecondOrderKind.Hessian, includeJacobian: false);
            return null;
        }
        catch (Exception e) when (e is InvalidRequestException or ResultTooLargeException)
        {
            return e is ResultTooLargeException ? "a one-sample Hessian is over Limits:MaxResponseMiB" : "an op on the path has no second-order rule";
        }
    }

    /// <summary>
    /// A Jacobian at each batch size (up to <see cref="ServedShapesMaxRows"/>) and wrt/of the replaced snapshot had AUTO time.
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
        foreach (var choice in served.Where(c => c.Batch <= ServedShapesMaxRows))
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
