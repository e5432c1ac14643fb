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

    /// <summary>
    /// A product by a matrix folds the left operand's batch axes into rows; the bound counted the matrix once per row,
    /// as if broadcast, and refused torchvision's ViT-B/16 at load (its seq-first attention multiplies [197, B, 768] by
    /// [768, 2304]: 349 M elements counted, 0.6 M made). Here [1000, 64] rows by a [64, 8192] matrix: 524 M counted.
    /// </summary>
    [Fact]
    public void AProductByAMatrixIsNotCountedOncePerRow()
    {
        var g = new OnnxBuilder();
        var x = g.X(1, 1000, 64);
        // Seq-first, as ViT's attention: the batch on axis 1, where no rewrite folds the product into a Gemm.
        var rows = g.Node("Transpose", [x], ("perm", new[] { 1, 0, 2 }));
        g.Output(g.Node("Transpose", [g.Node("MatMul", [rows, g.W(64, 8192)])], ("perm", new[] { 1, 0, 2 })));
        using var model = ModelVersion.Load("rows", 1, g.ToBytes(), new EngineLimits());
        using var scope = NewDisposeScope();
        var y = model.PredictInEngine([new HostTensor([1, 1000, 64], new float[64_000])]).Outputs.Single().Value;
        Assert.Equal([1, 1000, 8192], y.Shape);
    }
}
