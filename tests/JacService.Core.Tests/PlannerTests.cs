using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Planning;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

public class PlannerTests
{
    /// <summary>
    /// A plan keeps every folded value, however many equal each other. A Tensor's Equals compares values, so the
    /// planner's set of folded values, built by default equality, took two equal constants whose hash codes collided for
    /// one and left the second to die with the planning scope; the build then failed on an empty handle (Swin-T's plans,
    /// now and then). With 20,000 equal constants a collision among their hash codes is all but certain in each build.
    /// </summary>
    [Fact]
    public void EqualFoldedValuesAreEachKept()
    {
        const int Count = 20_000;
        var g = new OnnxBuilder();
        var x = g.X(2, 1);
        var zero = g.Const([0.0], 1);
        var parts = Enumerable.Range(0, Count).Select(_ => g.Node("Add", [zero, zero])).ToArray();
        var sum = g.Node("ReduceSum", [g.Node("Concat", parts, ("axis", 0L)), g.Ints(0)], ("keepdims", 1L));
        g.Node("Add", [x, sum]);
        var limits = new EngineLimits();
        using var graph = OnnxModelReader.Read(g.ToBytes(), ScalarType.Float32, limits.Model);

        for (int batch = 1; batch <= 3; batch++)
        {
            using var plan = Planner.Build(graph, [[batch, 1]]);
            var constants = plan.Constants.Where(t => t is not null).ToArray();
            Assert.True(constants.Length > Count, $"{constants.Length} constants");
            Assert.All(constants, t => Assert.False(t!.IsInvalid));
        }
    }
}
