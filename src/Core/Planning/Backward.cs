using JacService.Core.Derivatives;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Planning;

/// <summary>
/// The reverse sweep: from cotangents of some outputs back to the cotangent of wrt, through the reverse rules of the
/// nodes on the derivative path, over the values a primal pass kept. Each step runs in its own dispose scope, and a
/// node's output cotangents are released once its rule has passed them on.
/// </summary>
internal static class Backward
{
    /// <param name="seeds">Cotangents [K, ..value] by output value id.</param>
    /// <returns>The cotangent of wrt, [K, ..wrt], or null when none of the seeds depends on it.</returns>
    /// <param name="visit">Called for each node on the path with its outputs' cotangents (complete: every use of its
    /// outputs lies after it), before they are passed on and released.</param>
    public static Tensor? Run(ModelGraph graph, ExecutionPlan plan, Tensor?[] values, DerivativePath path,
        IReadOnlyDictionary<int, Tensor> seeds, int wrtValue, Action<GraphNode, Tensor?[]>? visit = null)
    {
        var cotangents = new Tensor?[graph.ValueCount];
        foreach (var (id, seed) in seeds) cotangents[id] = seed;

        for (int s = plan.Steps.Length - 1; s >= 0; s--)
        {
            BatchCancellation.ThrowIfRequested();
            var node = plan.Steps[s];
            if (!path.Carries[node.Index]) continue;
            var outCts = node.Outputs.Select(o => o >= 0 ? cotangents[o] : null).ToArray();
            if (outCts.All(t => t is null)) continue;
            visit?.Invoke(node, outCts);

            var ins = node.Inputs.Select(id => id >= 0 ? values[id] : null).ToArray();
            var outs = node.Outputs.Select(id => id >= 0 ? values[id]! : null!).ToArray();
            var needs = node.Inputs.Select(id => id >= 0 && path.DependsOnWrt[id]).ToArray();
            using (var scope = NewDisposeScope())
            {
                var results = Apply(node, graph, new VjpContext(node, graph.Opset, graph.ComputeType, ins, outs, outCts, needs));
                for (int i = 0; i < node.Inputs.Length && i < results.Length; i++)
                {
                    int id = node.Inputs[i];
                    if (id < 0 || !needs[i] || results[i] is not { } r) continue;
                    var previous = cotangents[id];
                    var sum = previous is null ? r : previous.Plus(r);
                    cotangents[id] = ReferenceEquals(sum, r) && outCts.Any(t => ReferenceEquals(t, r))
                        ? r.alias().MoveToOuterDisposeScope()
                        : sum.MoveToOuterDisposeScope();
                    previous?.Dispose();
                }
            }
            foreach (var o in node.Outputs.Where(o => o >= 0 && o != wrtValue))
            {
                if (!seeds.ContainsKey(o)) cotangents[o]?.Dispose();
                cotangents[o] = null;
            }
        }
        return cotangents[wrtValue];
    }

    private static Tensor?[] Apply(GraphNode node, ModelGraph graph, VjpContext context)
    {
        try
        {
            return OpTable.Rules[node.OpType].Vjp(context);
        }
        catch (Exception e) when (e is not NodeEvaluationException and not OutOfMemoryException)
        {
            throw new NodeEvaluationException(node.Name, node.OpType, "reverse rule: " + e.Message, e);
        }
    }
}
