using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// The planner refuses a plan over Limits:MaxPlannedElements before an op runs where the op bounds what it allocates
/// (OpRule.Allocates), and counts every other op after it ran. That is safe only if the bounds hold and the other ops
/// make at most a small multiple of what their inputs hold: checked here, node by node, on every op row.
/// </summary>
public class AllocationBoundTests
{
    public static TheoryData<string> Rows => new(OpRows.Rows.Select(r => r.Name));

    [Theory]
    [MemberData(nameof(Rows))]
    public void EachNodeMakesNoMoreThanItsBoundOrTwiceItsInputs(string row)
    {
        var g = new OnnxBuilder();
        OpRows.Rows.Single(r => r.Name == row).Build(g);
        using var model = ModelVersion.Load(row, 1, g.ToBytes(), new EngineLimits(), computeType: ScalarType.Float64);
        using var scope = NewDisposeScope();
        var graph = model.Graph;
        var values = new Tensor?[graph.ValueCount];
        foreach (var (id, t) in graph.Initializers) values[id] = t;
        for (int i = 0; i < g.Inputs.Count; i++) values[graph.InputIds[i]] = tensor(g.Inputs[i].Data, g.Inputs[i].Shape, ScalarType.Float64);

        foreach (var node in graph.Nodes)
        {
            var ins = node.Inputs.Select(i => i >= 0 ? new Dual(values[i]!, null) : (Dual?)null).ToArray();
            long? bound = Evaluator.Allocates(node, graph, ins);
            var outs = Evaluator.Apply(node, graph, ins);
            long made = node.Outputs.Select((id, o) => id >= 0 ? outs[o].Value.numel() : 0).Sum();
            long held = ins.Sum(d => d?.Value.numel() ?? 0);

            if (bound is { } b) Assert.True(made <= b, $"{node} made {made} elements, its bound said {b}");
            // Constant makes what the file holds, which the tensor limits bound at load.
            else if (node.OpType != "Constant")
                Assert.True(made <= 2 * held + 8, $"{node} made {made} elements from inputs of {held}; give its rule an Allocates bound");

            for (int o = 0; o < node.Outputs.Length; o++)
                if (node.Outputs[o] >= 0) values[node.Outputs[o]] = outs[o].Value;
        }
    }
}
