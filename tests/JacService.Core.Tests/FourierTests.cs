using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>What DFT refuses, at load and per request, with the reason (OpRows checks what it serves).</summary>
public class FourierTests
{
    [Theory]
    [InlineData("an inverse with onesided", 17, "an inverse DFT with onesided 1 is not supported (its definitions disagree); export the inverse of the full spectrum")]
    [InlineData("axis as an attribute at opset 20", 20, "axis is an input from opset 20, not an attribute")]
    [InlineData("axis as an input at opset 17", 17, "DFT takes its axis as an input from opset 20 (the model's is 17)")]
    [InlineData("DFT at opset 16", 16, "DFT is defined from opset 17; the model imports opset 16")]
    public void WhatTheDefinitionsLeaveOpenIsRefusedAtLoad(string what, int opset, string message)
    {
        var g = new OnnxBuilder(opset);
        var x = g.X(2, 8, 1);
        _ = what switch
        {
            "an inverse with onesided" => g.Node("DFT", [x], ("inverse", 1), ("onesided", 1)),
            "axis as an attribute at opset 20" => g.Node("DFT", [x], ("axis", 1)),
            "axis as an input at opset 17" => g.Node("DFT", [x, "", g.IntsShaped([], 1)]),
            _ => g.Node("DFT", [x]),
        };
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(what, 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("along the batch axis", "DFT along the batch axis (axis 0) would mix samples")]
    [InlineData("a onesided transform of a complex signal", "a onesided DFT takes a real signal [.., n, 1], got [2, 8, 2]")]
    [InlineData("a last axis of 3", "DFT takes a signal [batch, .., n, 1] (real) or [batch, .., n, 2] (complex), got [2, 8, 3]")]
    [InlineData("a dft_length of 0", "DFT dft_length 0 is not a length of 1 or more")]
    public void WhatARequestCannotTransformIsRefusedWithTheReason(string what, string message)
    {
        var g = new OnnxBuilder(17);
        _ = what switch
        {
            "along the batch axis" => g.Node("DFT", [g.X(2, 8, 1)], ("axis", 0)),
            "a onesided transform of a complex signal" => g.Node("DFT", [g.X(2, 8, 2)], ("onesided", 1)),
            "a last axis of 3" => g.Node("DFT", [g.X(2, 8, 3)]),
            _ => g.Node("DFT", [g.X(2, 8, 1), g.IntsShaped([], 0)]),
        };
        // The input's first axis is dynamic, so the node is first planned for a request.
        using var model = ModelVersion.Load(what, 1, OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var shape = g.Inputs[0].Shape;
        var e = Assert.Throws<NodeEvaluationException>(() =>
            model.Jacobian([new HostTensor(shape, new float[shape.Aggregate(1L, (p, d) => p * d)])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }
}
