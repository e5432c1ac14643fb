using JacService.Core.Onnx;
using JacService.Core.Ops;
using static JacService.Core.Ops.Scalars;
using static TorchSharp.torch;

namespace JacService.Core.Planning;

/// <summary>
/// Runs a plan: each step inside its own dispose scope (temporaries die at once), outputs moved to the caller's
/// scope, and values released after their last use so working memory follows the live set, not the whole graph.
/// Must run on one thread from start to end (TorchSharp scopes are per thread).
/// </summary>
internal static class Evaluator
{
    public sealed record Result(Tensor[] Values, Tensor?[] Tangents);

    /// <param name="carries">Per node index, whether the node propagates tangents (null: none do).</param>
    /// <param name="pairs">When the seed's directions are first-order ones followed by second-order ones, the basis
    /// that says how: each carrying node then adds its second-order term to its outputs' second-order directions.</param>
    public static Result Run(ModelGraph graph, ExecutionPlan plan, Tensor[] inputs,
        int wrtValue = -1, Tensor? seed = null, bool[]? carries = null, IReadOnlyList<int>? wanted = null, PairBasis? pairs = null)
    {
        var (values, tangents) = Walk(graph, plan, inputs, wrtValue, seed, carries, keep: null, pairs);
        var outputIds = wanted ?? graph.OutputIds;
        return new Result(outputIds.Select(id => values[id]!).ToArray(), outputIds.Select(id => tangents[id]).ToArray());
    }

    /// <summary>
    /// The primal pass of reverse mode: every value, with those marked in <paramref name="keep"/> (by value id) held
    /// past their last forward use because a reverse rule will read them. Returns the whole value table.
    /// </summary>
    public static Tensor?[] RunKeeping(ModelGraph graph, ExecutionPlan plan, Tensor[] inputs, bool[] keep) =>
        Walk(graph, plan, inputs, -1, null, null, keep, null).Values;

    /// <summary>
    /// <see cref="RunKeeping"/> with tangents pushed from <paramref name="seed"/>: the kept values keep their tangents
    /// too. Returns both tables by value id.
    /// </summary>
    public static (Tensor?[] Values, Tensor?[] Tangents) RunKeeping(ModelGraph graph, ExecutionPlan plan, Tensor[] inputs, bool[] keep,
        int wrtValue, Tensor seed, bool[] carries) =>
        Walk(graph, plan, inputs, wrtValue, seed, carries, keep, null);

    private static (Tensor?[] Values, Tensor?[] Tangents) Walk(ModelGraph graph, ExecutionPlan plan, Tensor[] inputs,
        int wrtValue, Tensor? seed, bool[]? carries, bool[]? keep, PairBasis? pairs)
    {
        var values = (Tensor?[])plan.Constants.Clone();
        var tangents = new Tensor?[graph.ValueCount];
        for (int i = 0; i < inputs.Length; i++) values[graph.InputIds[i]] = inputs[i];
        if (seed is not null) tangents[wrtValue] = seed;

        for (int s = 0; s < plan.Steps.Length; s++)
        {
            BatchCancellation.ThrowIfRequested();
            var node = plan.Steps[s];
            bool carry = carries?[node.Index] ?? false;
            var ins = new Dual?[node.Inputs.Length];
            for (int i = 0; i < ins.Length; i++)
            {
                int id = node.Inputs[i];
                if (id >= 0) ins[i] = new Dual(values[id]!, carry ? tangents[id] : null);
            }

            using (var scope = NewDisposeScope())
            {
                var outs = Apply(node, graph, ins);
                if (carry && pairs is not null) AddCurvature(node, graph, ins, outs, pairs);
                for (int o = 0; o < node.Outputs.Length && o < outs.Length; o++)
                {
                    int id = node.Outputs[o];
                    if (id < 0) continue;
                    values[id] = Own(outs[o].Value, ins);
                    tangents[id] = outs[o].Tangent is { } t ? Own(t, ins) : null;
                }
            }

            foreach (var id in plan.ReleaseAfter[s])
            {
                if (keep?[id] == true) continue;
                values[id]?.Dispose();
                tangents[id]?.Dispose();
                values[id] = tangents[id] = null;
            }
        }
        return (values, tangents);
    }

    internal static Dual[] Apply(GraphNode node, ModelGraph graph, Dual?[] inputs)
    {
        try
        {
            var outs = OpTable.Rules[node.OpType].Apply(new OpContext(node, graph.Opset, graph.ComputeType, inputs));
            if (outs.Length < node.Outputs.Count(o => o >= 0))
                throw new InvalidOperationException($"produced {outs.Length} outputs, the node names {node.Outputs.Length}");
            return outs;
        }
        catch (Exception e) when (e is not NodeEvaluationException and not OutOfMemoryException)
        {
            throw new NodeEvaluationException(node.Name, node.OpType, e.Message, e);
        }
    }

    /// <summary>The node's bound on what it allocates (<see cref="OpRule.Allocates"/>), or null; a failure is reported against the node.</summary>
    internal static long? Allocates(GraphNode node, ModelGraph graph, Dual?[] inputs)
    {
        if (OpTable.Rules[node.OpType].Allocates is not { } bound) return null;
        try
        {
            return bound(new OpContext(node, graph.Opset, graph.ComputeType, inputs));
        }
        catch (Exception e) when (e is not NodeEvaluationException and not OutOfMemoryException)
        {
            throw new NodeEvaluationException(node.Name, node.OpType, e.Message, e);
        }
    }

    /// <summary>
    /// Adds the node's second-order term (its curvature rule over the inputs' first-order directions) to the
    /// second-order directions of its outputs' tangents, which the JVP rule has filled with the linear part.
    /// </summary>
    private static void AddCurvature(GraphNode node, ModelGraph graph, Dual?[] inputs, Dual[] outs, PairBasis pairs)
    {
        var rule = OpTable.Rules[node.OpType];
        if (ReferenceEquals(rule.Curvature, OpRule.Linear)) return;
        long n = pairs.FirstOrder;
        var firstOrder = inputs.Select(d => d is { } x ? new Dual(x.Value, x.Tangent?.narrow(0, 0, n)) : (Dual?)null).ToArray();
        if (firstOrder.All(d => d?.Tangent is null)) return;
        var terms = Curvature(node, rule, new CurvatureContext(new OpContext(node, graph.Opset, graph.ComputeType, firstOrder), outs.Select(o => o.Value).ToArray(), pairs));
        for (int o = 0; o < terms.Length && o < outs.Length; o++)
        {
            if (terms[o] is not { } term || outs[o].Tangent is not { } t) continue;
            // The JVP rule's result may be a broadcast view, or (never for a non-linear op, but cheaply guarded) an input's tangent.
            var own = inputs.Any(d => d is { } x && ReferenceEquals(x.Tangent, t)) ? t.clone() : t.contiguous();
            own.narrow(0, n, pairs.Count).add_(term, S(1));
            outs[o] = outs[o] with { Tangent = own };
        }
    }

    /// <summary>A node's curvature terms, with a failure reported against the node.</summary>
    internal static Tensor?[] Curvature(GraphNode node, OpRule rule, CurvatureContext context)
    {
        try
        {
            var curvature = rule.Curvature ?? throw new InvalidOperationException("the op has no second-order rule");
            return curvature(context);
        }
        catch (Exception e) when (e is not NodeEvaluationException and not OutOfMemoryException)
        {
            throw new NodeEvaluationException(node.Name, node.OpType, "second-order rule: " + e.Message, e);
        }
    }

    /// <summary>
    /// Moves a step's result to the caller's scope. A rule may hand back one of its inputs (Identity, a no-op
    /// Cast); that tensor belongs to someone else, so the step gets its own handle to the same storage.
    /// </summary>
    private static Tensor Own(Tensor t, Dual?[] inputs)
    {
        foreach (var d in inputs)
            if (d is { } x && (ReferenceEquals(x.Value, t) || ReferenceEquals(x.Tangent, t)))
                return t.alias().MoveToOuterDisposeScope();
        return t.MoveToOuterDisposeScope();
    }
}
