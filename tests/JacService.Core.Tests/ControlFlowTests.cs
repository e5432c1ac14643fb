using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Tests;

/// <summary>
/// What unrolling If, Loop and Scan refuses at load, with the reason, and the limits it checks before copying anything
/// (OpRows checks what it serves against ONNX Runtime, finite differences and autograd).
/// </summary>
public class ControlFlowTests
{
    private const int F = OnnxType.Float, I64 = OnnxType.Int64, B = OnnxType.Bool;

    /// <summary>A Loop body adding <paramref name="x"/> to the carried value, passing the condition on.</summary>
    private static GraphProto PassOn(OnnxBuilder g, string x) =>
        g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]), b.Node("Add", [i[2], x])], [B, F]);

    private static readonly Dictionary<string, (Action<OnnxBuilder> Build, string Message)> Refused = new()
    {
        ["an If on the data"] = (g =>
        {
            var x = g.X(2, 3);
            var cond = g.Node("Greater", [g.Node("ReduceSum", [x], ("keepdims", 0)), g.Scalar(0)]);
            g.Node("If", [cond], ("then_branch", g.Body([], (b, _) => [b.Node("Neg", [x])])), ("else_branch", g.Body([], (b, _) => [b.Node("Sin", [x])])));
        }, "is not fixed when the model loads; a branch chosen by the data is not served"),
        ["an If branch with too few outputs"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("If", 2, [g.Bool(false)], ("then_branch", g.Body([], (b, _) => [b.Node("Neg", [x]), x])), ("else_branch", g.Body([], (b, _) => [b.Node("Sin", [x])])));
        }, "its else branch takes 0 inputs and gives 1 outputs for the node's 2; a branch takes none and gives each"),
        ["a while loop (no trip count)"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Loop", ["", g.Bool(true), x], ("body", PassOn(g, x)));
        }, "it has no trip count M"),
        ["a count from the data"] = (g =>
        {
            var x = g.X(2, 3);
            var m = g.Node("Cast", [g.Node("ReduceSum", [x], ("keepdims", 0))], ("to", I64));
            g.Node("Loop", [m, g.Bool(true), x], ("body", PassOn(g, x)));
        }, "is not a count fixed when the model loads"),
        ["a count from an axis the input leaves open"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Loop", [g.Node("Gather", [g.Node("Shape", [x]), g.IntsShaped([], 1)]), g.Bool(true), x], ("body", PassOn(g, x)));
        }, "is not a count fixed when the model loads"),
        ["a condition from the data"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Loop", [g.IntsShaped([], 3), g.Node("Greater", [g.Node("ReduceSum", [x], ("keepdims", 0)), g.Scalar(0)]), x], ("body", PassOn(g, x)));
        }, "its condition 'y"),
        ["a body that computes its condition"] = (g =>
        {
            var x = g.X(2, 3);
            var body = g.Body([I64, B, F], (b, i) => [b.Node("Less", [i[0], b.IntsShaped([], 2)]), b.Node("Add", [i[2], x])], [B, F]);
            g.Node("Loop", [g.IntsShaped([], 5), g.Bool(true), x], ("body", body));
        }, "its body computes the condition"),
        ["no iteration, with scan outputs"] = (g =>
        {
            var x = g.X(2, 3);
            var body = g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]), b.Node("Add", [i[2], x]), b.Node("Sin", [i[2]])], [B, F, F]);
            g.Node("Loop", 2, [g.IntsShaped([], 0), g.Bool(true), x], ("body", body));
        }, "it runs no iteration, and its scan outputs would have no shape the file fixes"),
        ["a body of the wrong arity"] = (g =>
        {
            var x = g.X(2, 3);
            var body = g.Body([I64, F], (b, i) => [b.Node("Add", [i[1], x])]);
            g.Node("Loop", [g.IntsShaped([], 2), g.Bool(true), x], ("body", body));
        }, "ONNX's Loop body takes the iteration number, the condition and each carried value"),
        ["a Loop without its body"] = (g =>
        {
            var x = g.X(2, 3);
            g.Node("Loop", [g.IntsShaped([], 2), g.Bool(true), x]);
        }, "it has no 'body' graph"),
        ["a Scan of an undeclared length"] = (g =>
        {
            var body = g.Body([F, F], (b, i) => [b.Node("Add", [i[0], i[1]])]);
            g.Node("Scan", [g.X(2, 3), g.X(2, 4, 3)], ("body", body), ("num_scan_inputs", 1), ("scan_input_axes", new long[] { 1 }));
        }, "the length of its scanned inputs along their scan axes is not declared"),
        ["a Scan of inputs whose lengths disagree"] = (g =>
        {
            var (x, y) = (g.X(2, 4, 3), g.X(2, 5, 3));
            g.Declare(x, 1);
            g.Declare(y, 1);
            var body = g.Body([F, F, F], (b, i) => [b.Node("Add", [i[0], b.Node("Mul", [i[1], i[2]])])]);
            g.Node("Scan", [g.X(2, 3), x, y], ("body", body), ("num_scan_inputs", 2), ("scan_input_axes", new long[] { 1, 1 }));
        }, "its scanned inputs declare lengths 4 and 5"),
        ["a Scan direction other than 0 or 1"] = (g =>
        {
            var x = g.X(2, 4, 3);
            g.Declare(x, 1);
            var body = g.Body([F, F], (b, i) => [b.Node("Add", [i[0], i[1]])]);
            g.Node("Scan", [g.X(2, 3), x], ("body", body), ("num_scan_inputs", 1), ("scan_input_axes", new long[] { 1 }),
                ("scan_input_directions", new long[] { 2 }));
        }, "scan_input_directions holds [2]; a direction is 0 (forward) or 1 (reverse)"),
        ["a Scan before opset 9"] = (g =>
        {
            g.Opset = 8;
            var body = g.Body([F, F], (b, i) => [b.Node("Add", [i[0], i[1]])]);
            g.Node("Scan", ["", g.X(2, 3), g.X(2, 4, 3)], ("body", body), ("num_scan_inputs", 1));
        }, "Scan before opset 9 (with a batch axis and sequence_lens) is not served"),
    };

    public static TheoryData<string> RefusedNames => new(Refused.Keys);

    [Theory]
    [MemberData(nameof(RefusedNames))]
    public void WhatIsNotFixedAtLoadIsRefusedWithTheReason(string name)
    {
        var (build, expected) = Refused[name];
        string message = LoadRefusal.Of(build);
        Assert.Contains(expected, message);
        Assert.Matches(@"node '(If|Loop|Scan)_\d+' \((If|Loop|Scan)\)", message);
    }

    /// <summary>A count of a billion is refused from the body's size alone, before one copy is made.</summary>
    [Fact]
    public void AnUnrollingOverTheNodeLimitIsRefusedBeforeCopying()
    {
        var limits = new EngineLimits { Model = new ModelLimits { MaxNodes = 1000 } };
        byte[] Loop(long count)
        {
            var g = new OnnxBuilder();
            var x = g.X(2, 3);
            g.Node("Loop", [g.IntsShaped([], count), g.Bool(true), x], ("body", PassOn(g, x)));
            return g.ToBytes();
        }
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("a billion", 1, Loop(1_000_000_000), limits));
        Assert.Contains("1,000,000,000 iterations of a 2-node body would unroll to over Limits:MaxNodes 1,000 nodes", e.Message);
        using var served = ModelVersion.Load("a hundred", 1, Loop(100), limits);
    }

    /// <summary>Loops inside loops multiply: the inner one is unrolled first and the outer counts its copies.</summary>
    [Fact]
    public void NestedLoopsCountTheirProduct()
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 3);
        var count = g.IntsShaped([], 40);
        var body = PassOn(g, x);
        for (int depth = 0; depth < 3; depth++)
        {
            var inner = body;
            body = g.Body([I64, B, F], (b, i) => [b.Node("Identity", [i[1]]), b.Node("Loop", [count, i[1], i[2]], ("body", inner))], [B, F]);
        }
        g.Node("Loop", [count, g.Bool(true), x], ("body", body));
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("nested", 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains("would unroll to over Limits:MaxNodes 100,000 nodes", e.Message);
    }
}
