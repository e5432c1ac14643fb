using JacService.Core.Derivatives;
using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// A request whose wrt feeds an input an op does not differentiate (a Range's bounds, a Clip's bounds, a OneHot's values) is refused with
/// the node and the input, rather than answered as if no derivative flowed there.
/// </summary>
public class NonDifferentiableInputTests
{
    [Theory]
    [InlineData("Range", "node 'Range_7' (Range) takes its input 0 ('y2') from 'x0'")]
    [InlineData("Clip", "node 'Clip_3' (Clip) takes its input 1 ('y2') from 'x0'")]
    [InlineData("OneHot", "node 'OneHot_12' (OneHot) takes its input 2 ('y11') from 'x0', and OneHot carries no derivative through that input")]
    public void AnInputTheOpDoesNotDifferentiateMustNotDependOnWrt(string op, string message)
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 3);
        var total = g.Node("ReduceSum", [x], ("keepdims", 0));
        if (op == "Range") g.Node("Mul", [x, g.Node("Range", [total, g.Node("Add", [total, g.Scalar(3)]), g.Scalar(1)])]);
        else if (op == "OneHot") g.Node("Mul", [x, g.Node("OneHot", [g.Ints(0, 2), g.Ints(3), g.Node("Slice", [g.Node("Reshape", [x, g.Ints(-1)]), g.Ints(0), g.Ints(2)])])]);
        else g.Node("Clip", [x, total]);
        using var model = ModelVersion.Load(op, 1, g.ToBytes(), new EngineLimits());
        using var scope = TorchSharp.torch.NewDisposeScope();
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
        {
            var e = Assert.Throws<InvalidRequestException>(() => model.Jacobian([new HostTensor([2, 3], [1, 2, 3, 4, 5, 6])], 0, [0], mode));
            Assert.True(e.Message.Contains($"derivatives with respect to 'x0' are not supported by this model: {message}"), e.Message);
        }
    }
}
