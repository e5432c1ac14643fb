using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Engine:GraphRewrites: each rewrite applies where it may and nowhere else, and the rewritten graph gives the file's
/// values, Jacobians in both modes and Hessians (float64, rewrites on against off).
/// </summary>
public class GraphRewritesTests
{
    /// <summary>Values from a few levels, zero among them: windows with tied maxima, and Relu's kink hit exactly.</summary>
    private static readonly Dist Levels = (rng, n) => Enumerable.Range(0, n).Select(_ => (rng.Next(5) - 2) * 0.5).ToArray();

    private static string ConvBn(OnnxBuilder g, string x, long cin, long cout, long group = 1, bool bias = true)
    {
        string[] conv = bias ? [x, g.W(cout, cin / group, 3, 3), g.W(cout)] : [x, g.W(cout, cin / group, 3, 3)];
        var y = g.Node("Conv", conv, ("pads", new long[] { 1, 1, 1, 1 }), ("group", group));
        return g.Node("BatchNormalization", [y, g.W(cout), g.W(cout), g.W(cout), g.W(Dists.Positive, cout)], ("epsilon", 1e-3f));
    }

    private static readonly (string Name, Action<OnnxBuilder> Build, string[] Rewrites, string[] Ops)[] Applying =
    [
        ("conv_bn", g => ConvBn(g, g.X(2, 3, 5, 5), 3, 4), ["folded"], ["Conv"]),
        ("conv_bn_grouped_no_bias", g => g.Node("Tanh", [ConvBn(g, g.X(2, 4, 5, 5), 4, 6, group: 2, bias: false)]), ["folded"], ["Conv", "Tanh"]),
        ("relu_maxpool_tiled", g => g.Node("MaxPool", [g.Node("Relu", [g.X(Levels, 2, 3, 6, 6)])], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 })),
            ["moved"], ["MaxPool", "Relu"]),
        ("relu_maxpool_overlapping_padded", g => g.Node("MaxPool", [g.Node("Relu", [g.X(Levels, 2, 2, 5, 5)])], ("kernel_shape", new long[] { 3, 3 }),
            ("pads", new long[] { 1, 0, 1, 1 }), ("ceil_mode", 1L), ("strides", new long[] { 2, 1 })), ["moved"], ["MaxPool", "Relu"]),
        ("relu_twice_then_maxpool", g => g.Node("MaxPool", [g.Node("Relu", [g.Node("Relu", [g.X(Levels, 1, 2, 4, 4)])])], ("kernel_shape", new long[] { 2, 2 })),
            ["moved"], ["Relu", "MaxPool", "Relu"]),
        ("small_cnn_like", g =>
        {
            var h = ConvBn(g, g.X(2, 1, 8, 8), 1, 4);
            h = g.Node("MaxPool", [g.Node("Relu", [h])], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
            h = g.Node("Elu", [g.Node("Conv", [h, g.W(4, 2, 3, 3), g.W(4)], ("pads", new long[] { 1, 1, 1, 1 }), ("group", 2L))]);
            h = g.Node("AveragePool", [g.Node("Pad", [h, g.Ints(0, 0, 0, 0, 0, 0, 0, 0)])], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
            g.Node("Gemm", [g.Node("Flatten", [h]), g.W(3, 16)], ("transB", 1L));
        }, ["folded", "moved"], ["Conv", "MaxPool", "Relu", "Conv", "Elu", "Pad", "AveragePool", "Flatten", "Gemm"]),
    ];

    public static TheoryData<string> ApplyingCases => new(Applying.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(ApplyingCases))]
    public void TheRewrittenGraphGivesTheFilesValuesAndDerivatives(string name)
    {
        var (_, build, rewrites, ops) = Applying.Single(c => c.Name == name);
        var g = new OnnxBuilder();
        build(g);
        using var rewritten = Load(g, rewrite: true);
        using var file = Load(g, rewrite: false);
        Assert.Equal(rewrites, rewritten.Rewrites.Select(r => r.Split(' ')[0]));
        Assert.Equal(ops, rewritten.Graph.Nodes.Select(n => n.OpType));
        Assert.Empty(file.Rewrites);

        using var scope = NewDisposeScope();
        var inputs = g.Inputs.Select(i => tensor(i.Data, i.Shape, ScalarType.Float64)).ToArray();
        var expected = file.Forward(inputs)[0];
        Close(expected, rewritten.Forward(inputs)[0], "output");
        long n = inputs[0].numel(), m = expected.numel();
        var basis = eye(n, dtype: ScalarType.Float64).reshape([n, .. inputs[0].shape]);
        Close(file.Jvp(inputs, 0, basis).Tangents[0]!, rewritten.Jvp(inputs, 0, basis).Tangents[0]!, "forward-mode Jacobian");
        var cotangents = eye(m, dtype: ScalarType.Float64).reshape([m, .. expected.shape]);
        Close(file.Vjp(inputs, 0, [0], [cotangents]), rewritten.Vjp(inputs, 0, [0], [cotangents]), "reverse-mode Jacobian");
        Close(file.JacobianTensors(inputs, 0, [0], DerivativeMode.Reverse).Jacobians[0],
            rewritten.JacobianTensors(inputs, 0, [0], DerivativeMode.Reverse).Jacobians[0], "batched reverse-mode Jacobian");
        if (n / inputs[0].shape[0] <= 64)
            Close(file.SecondOrderTensors(inputs, 0, [0], SecondOrderKind.Hessian).Derivatives[0],
                rewritten.SecondOrderTensors(inputs, 0, [0], SecondOrderKind.Hessian).Derivatives[0], "Hessian");
    }

    private static readonly (string Name, Action<OnnxBuilder> Build, string[] Ops)[] Refused =
    [
        ("conv_output_is_a_graph_output", g =>
        {
            var conv = g.Node("Conv", [g.X(1, 2, 4, 4), g.W(3, 2, 3, 3)]);
            g.Output(conv);
            g.Output(g.Node("BatchNormalization", [conv, g.W(3), g.W(3), g.W(3), g.W(Dists.Positive, 3)]));
        }, ["Conv", "BatchNormalization"]),
        ("conv_output_read_twice", g =>
        {
            var conv = g.Node("Conv", [g.X(1, 2, 4, 4), g.W(3, 2, 3, 3)]);
            g.Node("Add", [conv, g.Node("BatchNormalization", [conv, g.W(3), g.W(3), g.W(3), g.W(Dists.Positive, 3)])]);
        }, ["Conv", "BatchNormalization", "Add"]),
        ("batchnorm_scale_from_a_graph_input", g =>
            g.Node("BatchNormalization", [g.Node("Conv", [g.X(1, 2, 4, 4), g.W(3, 2, 3, 3)]), g.Input(Dists.Positive, [3], differentiated: false), g.W(3), g.W(3), g.W(Dists.Positive, 3)]),
            ["Conv", "BatchNormalization"]),
        ("relu_output_read_twice", g =>
        {
            var relu = g.Node("Relu", [g.X(1, 2, 4, 4)]);
            g.Node("Add", [g.Node("MaxPool", [relu], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 })), g.Node("AveragePool", [relu], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }))]);
        }, ["Relu", "MaxPool", "AveragePool", "Add"]),
        ("relu_output_is_a_graph_output", g =>
        {
            var relu = g.Node("Relu", [g.X(1, 2, 4, 4)]);
            g.Output(relu);
            g.Output(g.Node("MaxPool", [relu], ("kernel_shape", new long[] { 2, 2 })));
        }, ["Relu", "MaxPool"]),
    ];

    public static TheoryData<string> RefusedCases => new(Refused.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(RefusedCases))]
    public void NoRewriteWhereAValueARequestCanSeeWouldChange(string name)
    {
        var (_, build, ops) = Refused.Single(c => c.Name == name);
        var g = new OnnxBuilder();
        build(g);
        using var model = Load(g, rewrite: true);
        Assert.Empty(model.Rewrites);
        Assert.Equal(ops, model.Graph.Nodes.Select(n => n.OpType));
    }

    [Fact]
    public void SmallCnnLosesItsBatchNormalizationAndPoolsBeforeItsRelu()
    {
        using var model = ModelVersion.Load("small_cnn", 1, File.ReadAllBytes(Fixtures.ModelPath("small_cnn")), new EngineLimits());
        Assert.Equal(2, model.Rewrites.Count);
        var ops = model.Graph.Nodes.Select(n => n.OpType).ToList();
        Assert.DoesNotContain("BatchNormalization", ops);
        Assert.True(ops.IndexOf("MaxPool") < ops.IndexOf("Relu"), string.Join(", ", ops));
        // Nodes keep the file's names: errors still point into the file.
        Assert.Equal(["/conv1/Conv", "/MaxPool", "/Relu"], model.Graph.Nodes.Take(3).Select(n => n.Name));
        // The folded weights replace the file's (only the folded Conv read them).
        Assert.DoesNotContain(model.Graph.Initializers.Keys, id => model.Graph.ValueNames[id] is "conv1.weight" or "bn.running_var");
    }

    private static ModelVersion Load(OnnxBuilder g, bool rewrite) =>
        ModelVersion.Load("rewrite", 1, g.ToBytes(), new EngineLimits { RewriteGraph = rewrite }, computeType: ScalarType.Float64);

    private static void Close(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = Math.Max(1, expected.abs().max().item<double>());
        double error = (expected - actual).abs().max().item<double>();
        Assert.True(error <= 1e-12 * scale, $"{what}: max abs error {error:E2} (scale {scale:G4})");
    }
}
