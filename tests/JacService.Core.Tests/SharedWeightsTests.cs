using JacService.Core.Compiled;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// A version's ONNX Runtime sessions read one copy of its weights: every float weight is held once, and no derivative
/// graph multiplies by a transposed copy of one, which ONNX Runtime would fold into a constant of that graph's own.
/// What this saves is measured in docs/benchmarks.md ("One copy of the weights per version").
/// </summary>
public class SharedWeightsTests
{
    public static TheoryData<string> FixtureNames => [.. Fixtures.Names];

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void EveryFloatWeightIsHeldOnce(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var graph = ModelProto.Parser.ParseFrom(bytes).Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet();
        long expected = graph.Initializer
            .Where(t => t.DataType == (int)TensorProto.Types.DataType.Float && !inputs.Contains(t.Name) && t.Dims.All(d => d > 0))
            .Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d) * sizeof(float));

        using var weights = SharedWeights.TryFrom(bytes, new ModelLimits());

        Assert.NotNull(weights);
        Assert.True(expected > 0, $"{name} has no float weights");
        Assert.Equal(expected, weights.Bytes);
    }

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void DerivativeGraphsReadEveryWeightAsStored(string name)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var limits = new EngineLimits();
        using var graph = OnnxModelReader.Read(bytes, ScalarType.Float32, limits.Model);
        using var parts = new ModelParts(graph, limits);
        using var compiled = new CompiledDerivatives(bytes, parts, weights: null);
        var initializers = ModelProto.Parser.ParseFrom(bytes).Graph.Initializer.Select(t => t.Name).ToHashSet();
        long[][] shapes = graph.Inputs.Select(i => (long[])[2, .. i.Shape[1..]]).ToArray();

        foreach (var (mode, directions) in new (DerivativeMode, long?)[] { (DerivativeMode.Forward, null), (DerivativeMode.Reverse, null), (DerivativeMode.Forward, 3), (DerivativeMode.Reverse, 3) })
        {
            var written = ModelProto.Parser.ParseFrom(compiled.Write(0, [0], shapes, mode, directions).Model).Graph;
            var derivative = written.Node.Where(n => n.Output.Any(o => o.StartsWith("jac/", StringComparison.Ordinal))).ToList();
            Assert.NotEmpty(derivative);
            var transposed = derivative.Where(n => n.OpType == "Transpose" && n.Input.Any(initializers.Contains)).Select(n => n.Input[0]);
            Assert.True(!transposed.Any(), $"{name} {mode} {directions}: derivative nodes transpose the weights {string.Join(", ", transposed)}");
        }
    }
}
