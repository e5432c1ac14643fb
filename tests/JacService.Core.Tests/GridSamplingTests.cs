using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>What GridSample refuses, at load and per request, with the reason (OpRows checks what it serves).</summary>
public class GridSamplingTests
{
    [Theory]
    [InlineData("linear", 16, "mode 'linear' is not one of bilinear, nearest, bicubic at opset 16")]
    [InlineData("bilinear", 20, "mode 'bilinear' is not one of linear, nearest, cubic at opset 20")]
    public void AModeItDoesNotServeIsRefusedAtLoad(string mode, int opset, string message)
    {
        var g = new OnnxBuilder(opset);
        g.Node("GridSample", [g.W(2, 1, 3, 4), g.X(2, 2, 2, 2)], ("mode", mode));
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(mode, 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AnUnknownPaddingIsRefusedAtLoad()
    {
        var g = new OnnxBuilder(16);
        g.Node("GridSample", [g.W(2, 1, 3, 4), g.X(2, 2, 2, 2)], ("padding_mode", "wrap"));
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("wrap", 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains("padding_mode 'wrap' is not one of zeros, border, reflection", e.Message);
    }

    [Theory]
    [InlineData(16, new long[] { 2, 1, 2, 3, 4 }, new long[] { 2, 2, 2, 2, 3 }, "GridSample samples volumes from opset 20 (the model's is 16); X is [2, 1, 2, 3, 4]")]
    [InlineData(20, new long[] { 2, 1, 4 }, new long[] { 2, 3, 1 },
        "GridSample samples X [N, C, H, W] or [N, C, D, H, W] at a grid [N, ..out, 2 or 3] of as many coordinates as X has spatial axes, not X [2, 1, 4] at [2, 3, 1]")]
    [InlineData(20, new long[] { 2, 1, 3, 4 }, new long[] { 2, 2, 2, 3 },
        "GridSample samples X [N, C, H, W] or [N, C, D, H, W] at a grid [N, ..out, 2 or 3] of as many coordinates as X has spatial axes, not X [2, 1, 3, 4] at [2, 2, 2, 3]")]
    [InlineData(20, new long[] { 2, 1, 2, 3, 4 }, new long[] { 2, 2, 2, 2, 3 },
        "GridSample samples volumes linearly or by the nearest pixel; cubic sampling needs an image, not X [2, 1, 2, 3, 4]", "cubic")]
    public void WhatItCannotSampleIsRefusedWithTheReason(int opset, long[] image, long[] grid, string message, string? mode = null)
    {
        var g = new OnnxBuilder(opset);
        g.Node("GridSample", [g.W(image), g.X(grid)], mode is null ? [] : [("mode", mode)]);
        // The inputs' axes are not declared, so the node is first planned for a request.
        using var model = ModelVersion.Load("volume", 1, g.ToBytes(), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() =>
            model.Jacobian([new HostTensor(grid, new float[grid.Aggregate(1L, (p, d) => p * d)])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }

    /// <summary>
    /// A point at NaN or infinity reads a pixel that exists: the compiled graph answers (NaN where the point is NaN) and
    /// stays in service. Before, a NaN point's index was cast from NaN and GatherElements refused it: the request failed
    /// with "Out of range value in index tensor".
    /// </summary>
    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void APointAtNanOrInfinityLeavesTheCompiledGraphServing(float point)
    {
        using var model = ModelVersion.Load("neural_field", 1, File.ReadAllBytes(Fixtures.ModelPath("neural_field")), new EngineLimits { CalibrateAuto = false });
        using var scope = torch.NewDisposeScope();
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
        {
            var odd = model.Jacobian([new HostTensor([2, 2], [0.1f, point, 0.3f, -0.2f])], 0, [0], mode);
            Assert.True(odd.Compiled, model.CompiledDerivatives.Single(d => d.Mode == mode).Note);
            Assert.True(odd.Jacobians["y"].Data.Skip(4).All(float.IsFinite), "the other sample is unaffected");
            Assert.True(model.Jacobian([new HostTensor([2, 2], [0.1f, 0.2f, 0.3f, -0.2f])], 0, [0], mode).Compiled);
        }
    }

    /// <summary>
    /// A grid of no points (a dynamic axis sent as 0) makes a derivative without entries: wrt, or the output, holds no
    /// values per sample. The request is refused with the reason before any work; the passes threw ArgumentException
    /// (INTERNAL) from the chunking of an empty basis.
    /// </summary>
    [Fact]
    public void AGridOfNoPointsIsRefusedBeforeAnyDerivative()
    {
        var g = new OnnxBuilder(16);
        g.Node("GridSample", [g.X(2, 2, 1, 2), g.X(2, 0, 3, 2)]);
        using var model = ModelVersion.Load("empty", 1, g.ToBytes(), new EngineLimits());
        HostTensor[] inputs = [new HostTensor([2, 2, 1, 2], new float[8]), new HostTensor([2, 0, 3, 2], [])];
        var byGrid = Assert.Throws<InvalidRequestException>(() => model.CheckResultSize(inputs, 1, [0]));
        Assert.Equal($"input '{model.Inputs[1].Name}' [2, 0, 3, 2] holds no values per sample: a derivative with respect to it has no entries", byGrid.Message);
        var byImage = Assert.Throws<InvalidRequestException>(() => model.CheckSecondOrderSize(inputs, 0, [0], SecondOrderKind.Hessian, includeJacobian: false));
        Assert.Equal($"the outputs asked for ({model.Outputs[0].Name}) hold no values per sample for these inputs: their derivatives have no entries", byImage.Message);
    }
}
