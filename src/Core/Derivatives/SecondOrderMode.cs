using JacService.Core.Ops;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Second derivatives by forward propagation of second-order directions (the forward Hessian, and for its trace the
/// forward Laplacian of Li et al. 2024): one pass carries the first-order directions G of wrt's basis and, after them,
/// second-order directions S, one per Hessian entry or one for the whole trace. Each op's JVP rule maps S like G
/// (all an op linear in its input needs), and the op's curvature rule adds f''·(G ⊗ G). A Laplacian so costs about
/// one forward Jacobian, not n of them. Entries (and for a Laplacian, the directions themselves) are split into
/// passes that fit the working memory; the batch is split when even the smallest pass does not.
/// </summary>
internal sealed class SecondOrderMode(ModelParts parts)
{
    // Working copies a curvature rule makes per second-order direction (the two gathered gradients, their product)
    // while one op runs, counted against the working memory with the directions carried.
    private const long PairTemporaries = 2;

    /// <summary>
    /// Per-sample Hessians [B, ..out, ..in, ..in] of the outputs <paramref name="of"/> with respect to input
    /// <paramref name="wrt"/>, then (with <paramref name="includeJacobian"/>) their Jacobians [B, ..out, ..in].
    /// </summary>
    public (Tensor[] Outputs, Tensor[] Derivatives) Hessian(Tensor[] inputs, int wrt, int[] of, bool includeJacobian)
    {
        var graph = parts.Graph;
        long batch = inputs[0].shape[0];
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].shape[1..];
        long n = Shapes.Product(sampleShape);
        using var plan = parts.Plans.Lease(inputs);
        long fit = DirectionsThatFit(plan.Plan, path);
        if (fit < n + PairTemporaries + 1 && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, batch * fit / (n + PairTemporaries + 1)), part => Hessian(part, wrt, of, includeJacobian));

        // The upper triangle, row by row: H is symmetric, so each entry off the diagonal is computed once and written twice.
        long entries = n * (n + 1) / 2;
        var left = new long[entries];
        var right = new long[entries];
        for (long i = 0, p = 0; i < n; i++)
            for (long j = i; j < n; j++, p++) (left[p], right[p]) = (i, j);
        using var upper = tensor(left.Zip(right, (i, j) => i * n + j).ToArray());
        using var lower = tensor(left.Zip(right, (i, j) => j * n + i).ToArray());
        long chunk = Math.Clamp((fit - n) / (1 + PairTemporaries), 1, entries);

        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        var hessians = sizes.Select(m => zeros([batch, m, n * n], graph.ComputeType)).ToArray();
        var jacobians = includeJacobian ? sizes.Select(m => zeros([batch, m, n], graph.ComputeType)).ToArray() : [];
        var outputs = new Tensor[graph.Outputs.Count];
        using var basis = FirstOrderSeed(eye(n, dtype: graph.ComputeType), batch, sampleShape);
        for (long p0 = 0; p0 < entries; p0 += chunk)
        {
            long k = Math.Min(chunk, entries - p0);
            using var scope = NewDisposeScope();
            var pairs = PairBasis.Entries(n, left[(int)p0..(int)(p0 + k)], right[(int)p0..(int)(p0 + k)]);
            var seed = cat([basis, zeros([k, batch, .. sampleShape], graph.ComputeType)], 0);
            var result = Evaluator.Run(graph, plan.Plan, inputs, graph.InputIds[wrt], seed, path.Carries, graph.OutputIds, pairs);
            if (p0 == 0) Keep(result, outputs, of, jacobians, n);
            for (int j = 0; j < of.Length; j++)
            {
                if (result.Tangents[of[j]] is not { } t) continue;
                var second = t.narrow(0, n, k).reshape(k, batch, -1).permute(1, 2, 0);
                hessians[j].index_copy_(2, upper.narrow(0, p0, k), second);
                hessians[j].index_copy_(2, lower.narrow(0, p0, k), second);
            }
        }
        var shaped = hessians.Select((h, j) => h.reshape([batch, .. parts.SampleShape(plan.Plan, of[j]), .. sampleShape, .. sampleShape]));
        return (outputs, [.. shaped, .. Shaped(jacobians, plan.Plan, of, batch, sampleShape)]);
    }

    /// <summary>
    /// Per-sample Laplacians [B, ..out] of the outputs <paramref name="of"/>: the sum of the second derivatives along
    /// the flat indices <paramref name="axes"/> of wrt's sample; then (with <paramref name="includeJacobian"/>) the
    /// Jacobians [B, ..out, ..in] with respect to every element of wrt.
    /// </summary>
    public (Tensor[] Outputs, Tensor[] Derivatives) Laplacian(Tensor[] inputs, int wrt, int[] of, int[] axes, bool includeJacobian)
    {
        var graph = parts.Graph;
        long batch = inputs[0].shape[0];
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].shape[1..];
        long n = Shapes.Product(sampleShape);
        using var plan = parts.Plans.Lease(inputs);
        long fit = DirectionsThatFit(plan.Plan, path);
        const long smallest = 1 + PairTemporaries + 1;
        if (fit < smallest && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, batch * fit / smallest), part => Laplacian(part, wrt, of, axes, includeJacobian));

        // The trace is a sum over directions, so the directions themselves can be split across passes (each pass
        // carries some of them and the trace over those), unlike a Hessian's, whose entries pair any two of them.
        long[] directions = includeJacobian ? Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray() : axes.Select(a => (long)a).ToArray();
        var summed = new HashSet<long>(axes.Select(a => (long)a));
        long chunk = Math.Clamp((fit - 1) / (1 + PairTemporaries), 1, Math.Max(directions.Length, 1));

        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        var laplacians = sizes.Select(m => zeros([batch, m], graph.ComputeType)).ToArray();
        var jacobians = includeJacobian ? sizes.Select(m => zeros([batch, m, n], graph.ComputeType)).ToArray() : [];
        var outputs = new Tensor[graph.Outputs.Count];
        using var identity = eye(n, dtype: graph.ComputeType);
        for (long d0 = 0; d0 < Math.Max(directions.Length, 1); d0 += chunk)
        {
            long k = Math.Min(chunk, directions.Length - d0);
            using var scope = NewDisposeScope();
            var carried = directions[(int)d0..(int)(d0 + k)];
            var diagonal = Enumerable.Range(0, (int)k).Where(i => summed.Contains(carried[i])).Select(i => (long)i).ToArray();
            var pairs = PairBasis.Trace(k, diagonal.Length == k ? null : diagonal);
            var first = FirstOrderSeed(identity.index_select(0, tensor(carried)), batch, sampleShape);
            var seed = cat([first, zeros([1, batch, .. sampleShape], graph.ComputeType)], 0);
            var result = Evaluator.Run(graph, plan.Plan, inputs, graph.InputIds[wrt], seed, path.Carries, graph.OutputIds, pairs);
            if (d0 == 0)
                for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
            for (int j = 0; j < of.Length; j++)
            {
                if (result.Tangents[of[j]] is not { } t) continue;
                laplacians[j].add_(t.narrow(0, k, 1).reshape(batch, -1));
                if (includeJacobian) jacobians[j].narrow(2, d0, k).copy_(t.narrow(0, 0, k).reshape(k, batch, -1).permute(1, 2, 0));
            }
        }
        var shaped = laplacians.Select((l, j) => l.reshape([batch, .. parts.SampleShape(plan.Plan, of[j])]));
        return (outputs, [.. shaped, .. Shaped(jacobians, plan.Plan, of, batch, sampleShape)]);
    }

    /// <summary>Directions (first- and second-order alike) one pass can carry within the working memory.</summary>
    private long DirectionsThatFit(ExecutionPlan plan, DerivativePath path)
    {
        long bytesPerDirection = Math.Max(1, plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        return Math.Max(1, parts.Limits.WorkingMemoryBytes / bytesPerDirection);
    }

    /// <summary>Rows of an identity (one per direction, n wide) as tangents [K, B, ..sample], the same for every sample.</summary>
    private static Tensor FirstOrderSeed(Tensor rows, long batch, long[] sampleShape)
    {
        long k = rows.shape[0];
        return rows.reshape([k, 1, .. sampleShape]).expand([k, batch, .. sampleShape]);
    }

    /// <summary>The first pass's outputs, and from its first-order directions the Jacobians when they are asked for.</summary>
    private static void Keep(Evaluator.Result result, Tensor[] outputs, int[] of, Tensor[] jacobians, long n)
    {
        for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
        for (int j = 0; j < jacobians.Length; j++)
        {
            if (result.Tangents[of[j]] is not { } t) continue;
            long batch = t.shape[1];
            jacobians[j].copy_(t.narrow(0, 0, n).reshape(n, batch, -1).permute(1, 2, 0));
        }
    }

    private Tensor[] Shaped(Tensor[] jacobians, ExecutionPlan plan, int[] of, long batch, long[] sampleShape) =>
        jacobians.Select((jac, j) => jac.reshape([batch, .. parts.SampleShape(plan, of[j]), .. sampleShape])).ToArray();
}
