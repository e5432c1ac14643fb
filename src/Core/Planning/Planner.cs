using JacService.Core.Onnx;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Planning;

/// <summary>
/// Builds a plan for one set of input shapes by running the graph once on zeros of those shapes: this gives
/// every value's static shape and the values of the data-independent sub-graphs, which are then folded.
/// </summary>
internal static class Planner
{
    /// <param name="maxPlannedElements">Limits:MaxPlannedElements, per sample (see <see cref="PlanBudget"/>).</param>
    public static ExecutionPlan Build(ModelGraph graph, long[][] inputShapes, long maxPlannedElements = long.MaxValue)
    {
        int n = graph.ValueCount;
        var budget = new PlanBudget(maxPlannedElements, inputShapes[0][0]);
        var dataDependent = new bool[n];
        foreach (var id in graph.InputIds) dataDependent[id] = true;

        var shapes = new long[]?[n];
        var folded = new Dictionary<int, Tensor>();
        using (var scope = NewDisposeScope())
        {
            var values = new Tensor?[n];
            foreach (var (id, t) in graph.Initializers) values[id] = t;
            for (int i = 0; i < graph.Inputs.Count; i++)
            {
                var sig = graph.Inputs[i];
                budget.Input(sig, inputShapes[i]);
                values[graph.InputIds[i]] = zeros(inputShapes[i], sig.ElementType.DeviceType(graph.ComputeType));
            }
            foreach (var (id, t) in values.Select((t, id) => (id, t)).Where(p => p.t is not null)) shapes[id] = t!.Dims();

            foreach (var node in graph.Nodes)
            {
                bool dependent = !Ops.OpTable.Rules[node.OpType].ShapeOnly && node.Inputs.Any(i => i >= 0 && dataDependent[i]);
                var outs = Step(graph, node, values, budget);
                for (int o = 0; o < node.Outputs.Length; o++)
                {
                    int id = node.Outputs[o];
                    if (id < 0) continue;
                    values[id] = outs[o].Value;
                    shapes[id] = outs[o].Value.Dims();
                    dataDependent[id] = dependent;
                    if (!dependent) folded[id] = outs[o].Value;
                }
            }
            // Folded values outlive the planning scope; everything else computed on zeros dies with it. By reference: a
            // Tensor's Equals compares values, so two equal constants whose hash codes collide would count as one, and
            // the second would die with the scope.
            foreach (var t in folded.Values.Distinct<Tensor>(ReferenceEqualityComparer.Instance)) t.DetachFromDisposeScope();
        }

        // Aliased results (a rule handing back its input) would be disposed twice; give each folded value its own handle.
        var owned = new Dictionary<int, Tensor>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var weights = new HashSet<Tensor>(graph.Initializers.Values, ReferenceEqualityComparer.Instance);
        foreach (var (id, t) in folded)
            owned[id] = seen.Add(t) && !weights.Contains(t) ? t : t.alias().DetachFromDisposeScope();

        var steps = graph.Nodes.Where(node => node.Outputs.Any(o => o >= 0 && dataDependent[o])).ToArray();
        var constants = new Tensor?[n];
        foreach (var (id, t) in graph.Initializers) constants[id] = t;
        foreach (var (id, t) in owned) constants[id] = t;
        // Rules read small constants (pads, starts, axes, shapes, bounds) as numbers: from a host copy, not the device.
        foreach (var t in constants) if (t is not null) HostValues.Keep(t);

        return new ExecutionPlan
        {
            Steps = steps,
            Constants = constants,
            ValueShapes = shapes,
            ReleaseAfter = Liveness(graph, steps),
            Folded = owned.Values.ToArray(),
        };
    }

    /// <summary>
    /// For a graph with dynamic axes, which gets no plan at load: evaluates, under the same limit, what depends on no
    /// input at all (the sub-graphs ONNX Runtime folds when it opens the model), and frees it.
    /// </summary>
    public static void CheckConstants(ModelGraph graph, long maxPlannedElements)
    {
        var budget = new PlanBudget(maxPlannedElements, 1);
        using var scope = NewDisposeScope();
        var values = new Tensor?[graph.ValueCount];
        foreach (var (id, t) in graph.Initializers) values[id] = t;
        foreach (var node in graph.Nodes)
        {
            if (node.Inputs.Any(i => i >= 0 && values[i] is null)) continue;
            var outs = Step(graph, node, values, budget);
            for (int o = 0; o < node.Outputs.Length; o++)
                if (node.Outputs[o] >= 0) values[node.Outputs[o]] = outs[o].Value;
        }
    }

    /// <summary>Runs one node on the values so far, inside the budget: checked before where the op can say, counted after.</summary>
    private static Ops.Dual[] Step(ModelGraph graph, GraphNode node, Tensor?[] values, PlanBudget budget)
    {
        var ins = node.Inputs.Select(i => i >= 0 ? new Ops.Dual(values[i]!, null) : (Ops.Dual?)null).ToArray();
        budget.Before(node, Evaluator.Allocates(node, graph, ins));
        var outs = Evaluator.Apply(node, graph, ins);
        long made = 0;
        for (int o = 0; o < node.Outputs.Length; o++)
            if (node.Outputs[o] >= 0) made = Ops.Sizes.Plus(made, outs[o].Value.numel());
        budget.After(node, made);
        return outs;
    }

    public static string Key(long[][] inputShapes) => string.Join(";", inputShapes.Select(s => string.Join("x", s)));

    private static int[][] Liveness(ModelGraph graph, GraphNode[] steps)
    {
        var producedByStep = new HashSet<int>(steps.SelectMany(s => s.Outputs).Where(o => o >= 0));
        var lastUse = new Dictionary<int, int>();
        for (int s = 0; s < steps.Length; s++)
        {
            foreach (var id in steps[s].Inputs.Where(producedByStep.Contains)) lastUse[id] = s;
            // An output nobody reads dies right after its step.
            foreach (var id in steps[s].Outputs.Where(o => o >= 0)) lastUse.TryAdd(id, s);
        }
        foreach (var id in graph.OutputIds) lastUse.Remove(id);
        var release = new List<int>[steps.Length];
        for (int s = 0; s < steps.Length; s++) release[s] = [];
        foreach (var (id, s) in lastUse) release[s].Add(id);
        return release.Select(r => r.ToArray()).ToArray();
    }
}
