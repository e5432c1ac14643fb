using JacService.Core.Onnx;
using JacService.Core.Ops;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Reverse mode (jacrev): one primal pass that keeps what the reverse rules read, then output directions pulled back
/// through the graph as a leading basis axis of the cotangents. A Jacobian pulls the identity basis of one sample's
/// outputs (each output in of in turn), in chunks sized so the kept values plus one chunk's cotangents stay under the
/// working-memory budget; a VJP pulls the caller's cotangents.
/// </summary>
internal sealed class ReverseMode(ModelParts parts)
{
    /// <summary>Per-sample Jacobians [B, ..out, ..in] of the outputs <paramref name="of"/> with respect to input <paramref name="wrt"/>.</summary>
    public (Tensor[] Outputs, Tensor[] Jacobians) Jacobian(Tensor[] inputs, int wrt, int[] of, long maxDirections = long.MaxValue)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].Dims()[1..];
        long n = Shapes.Product(sampleShape);

        using var plan = parts.Plans.Lease(inputs);
        var (chunk, splitRows) = Chunking(plan.Plan, path, batch);
        if (splitRows > 0) return BatchSplit.Run(inputs, splitRows, part => Jacobian(part, wrt, of, maxDirections));

        var sizes = of.Select(o => parts.SampleElements(plan.Plan, o, batch)).ToArray();
        long m = Math.Min(sizes.Sum(), maxDirections);
        chunk = Math.Clamp(chunk, 1, Math.Max(m, 1));
        var jacobians = sizes.Select(size => zeros([batch, size, n], graph.ComputeType)).ToArray();
        var values = Evaluator.RunKeeping(graph, plan.Plan, inputs, path.ReadByReverse);
        try
        {
            var outputs = graph.OutputIds.Select(id => values[id]!).ToArray();
            using var identity = eye(m, sizes.Sum(), dtype: graph.ComputeType);
            for (long k0 = 0; k0 < m; k0 += chunk)
            {
                long k = Math.Min(chunk, m - k0);
                using var scope = NewDisposeScope();
                var (seeds, spans) = OutputBasis(parts, plan.Plan, of, sizes, identity, k0, k, batch);
                if (Backward.Run(graph, plan.Plan, values, path, seeds, graph.InputIds[wrt]) is not { } ct) continue;
                var flat = ct.reshape(k, batch, n);
                foreach (var (j, lo, hi) in spans)
                {
                    long start = lo - sizes.Take(j).Sum();
                    jacobians[j].narrow(1, start, hi - lo).copy_(flat.narrow(0, lo - k0, hi - lo).permute(1, 0, 2));
                }
            }
            if (maxDirections < long.MaxValue) return (outputs, jacobians);
            return (outputs, jacobians.Select((jac, j) => jac.reshape([batch, .. parts.SampleShape(plan.Plan, of[j]), .. sampleShape])).ToArray());
        }
        finally
        {
            Release(graph, plan.Plan, values);
        }
    }

    /// <summary>
    /// Pulls caller-given cotangents [T, B, ..out] (one per output in <paramref name="of"/>, null for none) back to
    /// <paramref name="wrt"/>: returns the outputs and the VJP [T, B, ..wrt]. T is split to stay under the working memory.
    /// </summary>
    public (Tensor[] Outputs, Tensor Vjp) Pull(Tensor[] inputs, int wrt, int[] of, Tensor?[] cotangents)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        long directions = cotangents.First(c => c is not null)!.size(0);
        var path = parts.Path(wrt, of);
        using var plan = parts.Plans.Lease(inputs);
        var (chunk, _) = Chunking(plan.Plan, path, batch);
        chunk = Math.Clamp(chunk, 1, directions);
        var result = zeros([directions, .. inputs[wrt].Dims()], graph.ComputeType);
        var values = Evaluator.RunKeeping(graph, plan.Plan, inputs, path.ReadByReverse);
        try
        {
            var outputs = graph.OutputIds.Select(id => values[id]!).ToArray();
            for (long t0 = 0; t0 < directions; t0 += chunk)
            {
                long k = Math.Min(chunk, directions - t0);
                using var scope = NewDisposeScope();
                var seeds = new Dictionary<int, Tensor>();
                for (int j = 0; j < of.Length; j++)
                {
                    if (cotangents[j] is not { } c) continue;
                    int id = graph.OutputIds[of[j]];
                    var seed = c.narrow(0, t0, k);
                    seeds[id] = seeds.TryGetValue(id, out var other) ? other.Plus(seed) : seed;
                }
                if (Backward.Run(graph, plan.Plan, values, path, seeds, graph.InputIds[wrt]) is { } ct)
                    result.narrow(0, t0, k).copy_(ct);
            }
            return (outputs, result);
        }
        finally
        {
            Release(graph, plan.Plan, values);
        }
    }

    /// <summary>
    /// Rows [k0, k0 + k) of the identity basis over the outputs in <paramref name="of"/> (their per-sample elements
    /// concatenated, <paramref name="sizes"/> each) as cotangent seeds [k, B, ..output] by output value id, the same for
    /// every sample; and, per output the rows reach, the span of basis rows it takes. Outputs the rows miss get no seed.
    /// </summary>
    internal static (Dictionary<int, Tensor> Seeds, List<(int J, long Lo, long Hi)> Spans) OutputBasis(ModelParts parts, ExecutionPlan plan,
        int[] of, long[] sizes, Tensor identity, long k0, long k, long batch)
    {
        var rows = identity.narrow(0, k0, k);
        var seeds = new Dictionary<int, Tensor>();
        var spans = new List<(int J, long Lo, long Hi)>();
        long offset = 0;
        for (int j = 0; j < of.Length; offset += sizes[j], j++)
        {
            long lo = Math.Max(k0, offset), hi = Math.Min(k0 + k, offset + sizes[j]);
            if (lo >= hi) continue;
            var shape = parts.SampleShape(plan, of[j]);
            int id = parts.Graph.OutputIds[of[j]];
            var seed = rows.narrow(1, offset, sizes[j]).reshape([k, 1, .. shape]).expand([k, batch, .. shape]);
            seeds[id] = seeds.TryGetValue(id, out var other) ? other.Plus(seed) : seed;
            spans.Add((j, lo, hi));
        }
        return (seeds, spans);
    }

    /// <summary>
    /// Directions per backward pass so that the kept primal values plus one chunk's cotangents fit the budget, or, when
    /// even one direction does not fit, the rows per slice of the batch (else 0).
    /// </summary>
    private (long Chunk, long SplitRows) Chunking(ExecutionPlan plan, DerivativePath path, long batch)
    {
        long budget = parts.Limits.WorkingMemoryBytes;
        long kept = plan.ElementsOf(path.ReadByReverse) * parts.ElementSize;
        long perDirection = Math.Max(1, plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        if (kept + perDirection > budget && batch > 1)
            return (0, Math.Max(1, batch * budget / (kept + perDirection)));
        return (Math.Clamp((budget - kept) / perDirection, 1, parts.DirectionsPerTemporary(plan, path.Carries)), 0);
    }

    /// <summary>
    /// Frees kept values (and tangents, where a pass kept them too) now rather than at the end of the batch, keeping
    /// inputs, constants and outputs.
    /// </summary>
    internal static void Release(ModelGraph graph, ExecutionPlan plan, Tensor?[] values, Tensor?[]? tangents = null)
    {
        var keep = new HashSet<int>(graph.OutputIds.Concat(graph.InputIds));
        for (int id = 0; id < values.Length; id++)
        {
            if (tangents is not null)
            {
                tangents[id]?.Dispose();
                tangents[id] = null;
            }
            if (values[id] is not { } t || keep.Contains(id) || plan.Constants[id] is not null) continue;
            t.Dispose();
            values[id] = null;
        }
    }
}
