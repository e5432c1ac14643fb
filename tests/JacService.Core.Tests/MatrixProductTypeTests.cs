using JacService.Core.Derivatives;
using JacService.Core.Models;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// TorchSharp's matmul is its one tensor call that does not turn libtorch's errors into exceptions: operands libtorch
/// refuses ended the process ("terminate called after throwing an instance of 'c10::Error'"), and with it this test
/// host. The engine checks them first, so such a model gets its node's error and the process serves on.
/// </summary>
public class MatrixProductTypeTests
{
    private const long Bool = OnnxType.Bool;

    private static readonly (string Name, Action<OnnxBuilder> Build, string Node, string Message)[] Refused =
    [
        // Found by reading TorchSharp's native sources after the model fuzzer's crash below: a one-node model did it.
        ("matmul_int64_weight", g => g.Node("MatMul", [g.X(2, 4), g.IntsShaped([4, 3], 1, 0, 2, 0, 1, 1, 3, 1, 0, 1, 2, 1)]),
            "MatMul", "matrix product operands differ in type: Float32 and Int64"),
        ("matmul_bool_weight", g => g.Node("MatMul", [g.X(2, 4), g.Node("Cast", [g.W(4, 3)], ("to", Bool))]),
            "MatMul", "matrix product operands differ in type: Float32 and Bool"),
        ("matmul_bool_operands", g => g.Node("MatMul", [g.Node("Cast", [g.X(2, 4)], ("to", Bool)), g.Node("Cast", [g.W(4, 3)], ("to", Bool))]),
            "MatMul", "a matrix product of Bool operands is not supported"),
    ];

    public static TheoryData<string> RefusedCases => new(Refused.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(RefusedCases))]
    public void AMatrixProductOfOperandsLibtorchRefusesIsTheNodesError(string name)
    {
        var (_, build, op, message) = Refused.Single(c => c.Name == name);
        var g = new OnnxBuilder();
        build(g);
        using var model = ModelVersion.Load(name, 1, g.ToBytes(), new EngineLimits());
        using var scope = NewDisposeScope();

        var e = Assert.Throws<NodeEvaluationException>(() => model.Forward(Inputs(g)));

        Assert.Equal(op, e.OpType);
        Assert.EndsWith(message, e.Message);
    }

    /// <summary>
    /// Conv's reverse rule on one input channel is a matrix product of the weight's taps and the cotangent. A bool
    /// weight cannot pass the forward convolution, except on zero rows, where libtorch's convolution checks nothing:
    /// here a slice keeps none of the batch for a bool-weighted Conv and a Concat restores the rows. The model
    /// fuzzer's final CI run of 3ff8716 crashed in that product ("expected m1 and m2 to have the same dtype, but got:
    /// bool != float"); its input was not kept, and this is the path it took as far as the fold's product.
    /// </summary>
    [Fact]
    public void AOneChannelConvsReverseRuleRefusesABoolWeightInsteadOfEndingTheProcess()
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 1, 4, 4);
        var none = g.Node("Slice", [x, g.Ints(0), g.Ints(0), g.Ints(0)]);
        var pads = ("pads", (object)new long[] { 1, 1, 1, 1 });
        var empty = g.Node("Conv", [none, g.Node("Cast", [g.W(3, 1, 3, 3)], ("to", Bool))], pads);
        var full = g.Node("Conv", [x, g.W(3, 1, 3, 3)], pads);
        g.Node("Concat", [empty, full], ("axis", 0L));
        using var model = ModelVersion.Load("bool_conv", 1, g.ToBytes(), new EngineLimits());
        using var scope = NewDisposeScope();
        var inputs = Inputs(g);
        Assert.Equal([2L, 3, 4, 4], model.Forward(inputs)[0].shape);

        var e = Assert.Throws<NodeEvaluationException>(() => model.JacobianTensors(inputs, 0, [0], DerivativeMode.Reverse));

        Assert.Equal("Conv", e.OpType);
        Assert.EndsWith("matrix product operands differ in type: Bool and Float32", e.Message);
        // The forward mode has no product with the weight's taps: the zero rows give a zero Jacobian there.
        var forward = model.JacobianTensors(inputs, 0, [0], DerivativeMode.Forward).Jacobians[0];
        Assert.Equal([2L, 3, 4, 4, 1, 4, 4], forward.shape);
    }

    private static Tensor[] Inputs(OnnxBuilder g) => g.Inputs.Select(i => tensor(i.Data, i.Shape, ScalarType.Float32)).ToArray();
}
