using JacService.Core.Ops;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Derivatives;

/// <summary>
/// Forward mode (jacfwd): input directions pushed through the graph as a leading basis axis of the tangents. A
/// Jacobian pushes the identity basis of one sample's input, in chunks that keep one pass under the working-memory
/// budget; a JVP pushes the caller's directions.
/// </summary>
internal sealed class ForwardMode(ModelParts parts)
{
    /// <summary>Per-sample Jacobians [B, ..out, ..in] of the outputs <paramref name="of"/> with respect to input <paramref name="wrt"/>.</summary>
    public (Tensor[] Outputs, Tensor[] Jacobians) Jacobian(Tensor[] inputs, int wrt, int[] of, long maxDirections = long.MaxValue)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0);
        var path = parts.Path(wrt, of);
        var sampleShape = inputs[wrt].Dims()[1..];
        long n = Math.Min(Shapes.Product(sampleShape), maxDirections);

        using var plan = parts.Plans.Lease(inputs);
        long budget = parts.Limits.WorkingMemoryBytes;
        long bytesPerDirection = Math.Max(1, plan.Plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        if (bytesPerDirection > budget && batch > 1)
            return BatchSplit.Run(inputs, Math.Max(1, batch * budget / bytesPerDirection), part => Jacobian(part, wrt, of, maxDirections));

        long chunk = Math.Clamp(Math.Min(budget / bytesPerDirection, parts.DirectionsPerTemporary(plan.Plan, path.Carries)), 1, n);
        var outputs = new Tensor[graph.Outputs.Count];
        long nAll = Shapes.Product(sampleShape);
        var jacobians = of.Select(o => empty([batch, parts.SampleElements(plan.Plan, o, batch), n], graph.ComputeType)).ToArray();
        using var identity = eye(n, nAll, dtype: graph.ComputeType);
        int wrtValue = graph.InputIds[wrt];

        for (long k0 = 0; k0 < n; k0 += chunk)
        {
            long k = Math.Min(chunk, n - k0);
            using var scope = NewDisposeScope();
            var seed = identity.narrow(0, k0, k).reshape([k, 1, .. sampleShape]).expand([k, batch, .. sampleShape]);
            var result = Evaluator.Run(graph, plan.Plan, inputs, wrtValue, seed, path.Carries, graph.OutputIds);
            if (k0 == 0)
                for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
            for (int j = 0; j < of.Length; j++)
            {
                if (result.Tangents[of[j]] is not { } t) { jacobians[j].narrow(2, k0, k).zero_(); continue; }
                jacobians[j].narrow(2, k0, k).copy_(t.reshape(k, batch, -1).permute(1, 2, 0));
            }
        }
        if (n < nAll) return (outputs, jacobians);
        return (outputs, jacobians.Select((jac, j) => jac.reshape([batch, .. parts.SampleShape(plan.Plan, of[j]), .. sampleShape])).ToArray());
    }

    /// <summary>
    /// Pushes caller-given directions <paramref name="seed"/> [T, B, ..wrt] and returns the outputs and, per output in
    /// <paramref name="of"/>, its directional derivatives [T, B, ..out]. T is split to stay under the working memory.
    /// </summary>
    public (Tensor[] Outputs, Tensor[] Tangents) Push(Tensor[] inputs, int wrt, int[] of, Tensor seed)
    {
        var graph = parts.Graph;
        long batch = inputs[0].size(0), directions = seed.size(0);
        var path = parts.Path(wrt, of);
        using var plan = parts.Plans.Lease(inputs);
        long bytesPerDirection = Math.Max(1, plan.Plan.TangentElementsPerDirection(path.Carries) * parts.ElementSize);
        long chunk = Math.Clamp(Math.Min(parts.Limits.WorkingMemoryBytes / bytesPerDirection, parts.DirectionsPerTemporary(plan.Plan, path.Carries)),
            1, directions);
        var outputs = new Tensor[graph.Outputs.Count];
        var tangents = of.Select(o => zeros([directions, batch, .. parts.SampleShape(plan.Plan, o)], graph.ComputeType)).ToArray();
        for (long t0 = 0; t0 < directions; t0 += chunk)
        {
            long k = Math.Min(chunk, directions - t0);
            using var scope = NewDisposeScope();
            var result = Evaluator.Run(graph, plan.Plan, inputs, graph.InputIds[wrt], seed.narrow(0, t0, k), path.Carries, graph.OutputIds);
            if (t0 == 0)
                for (int i = 0; i < outputs.Length; i++) outputs[i] = result.Values[i].MoveToOuterDisposeScope();
            for (int j = 0; j < of.Length; j++)
                if (result.Tangents[of[j]] is { } t) tangents[j].narrow(0, t0, k).copy_(t);
        }
        return (outputs, tangents);
    }
}
