using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>What the recurrent ops refuse, at load and per request, with the reason (OpRows checks what they serve).</summary>
public class RecurrentTests
{
    private static OnnxBuilder Lstm(params (string, object)[] attributes) => Lstm(14, attributes);

    private static OnnxBuilder Lstm(int opset, params (string, object)[] attributes)
    {
        var g = new OnnxBuilder(opset);
        g.Node("LSTM", [g.X(3, 2, 3), g.W(1, 8, 3), g.W(1, 8, 2)], [("hidden_size", 2), .. attributes]);
        return g;
    }

    [Theory]
    [InlineData("clip", "clip is not supported: a clipped cell has no derivative where it clips; export without cell clipping")]
    [InlineData("input_forget", "input_forget is not supported; export with separate input and forget gates")]
    [InlineData("an unknown activation", "activation 'Softsign' is not supported (Sigmoid, Tanh, Relu, HardSigmoid)")]
    [InlineData("too few activations", "activations lists 2 functions where LSTM takes 3 per direction")]
    [InlineData("an unknown direction", "direction 'both' is not forward, reverse or bidirectional")]
    [InlineData("layout before opset 14", "the attribute layout arrived in opset 14 (the model's is 13)")]
    public void WhatTheCellsCannotRunIsRefusedAtLoad(string what, string message)
    {
        var g = what switch
        {
            "clip" => Lstm(("clip", 3.0)),
            "input_forget" => Lstm(("input_forget", 1)),
            "an unknown activation" => Lstm(("activations", new[] { "Sigmoid", "Softsign", "Tanh" })),
            "too few activations" => Lstm(("activations", new[] { "Sigmoid", "Tanh" })),
            "layout before opset 14" => Lstm(13, ("layout", 1)),
            _ => Lstm(("direction", "both")),
        };
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(what, 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("sequences shorter than the input", "LSTM sequence_lens [3, 2] are not all the sequence's 3 steps")]
    [InlineData("weights of another input size", "LSTM X [3, 2, 3], W [1, 8, 4] and R [1, 8, 2] do not describe 1 direction(s) of 4 gates over one input size")]
    public void WhatARequestCannotRunIsRefusedWithTheReason(string what, string message)
    {
        var g = new OnnxBuilder(14);
        var x = g.X(3, 2, 3);
        _ = what.StartsWith("sequences")
            ? g.Node("LSTM", [x, g.W(1, 8, 3), g.W(1, 8, 2), "", g.Ints(3, 2)], ("hidden_size", 2))
            : g.Node("LSTM", [x, g.W(1, 8, 4), g.W(1, 8, 2)], ("hidden_size", 2));
        // The input's first axis is dynamic, so the node is first planned for a request.
        using var model = ModelVersion.Load(what, 1, OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() => model.Jacobian([new HostTensor([3, 2, 3], new float[18])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }
}
