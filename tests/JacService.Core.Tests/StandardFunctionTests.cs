using JacService.Core.Models;

namespace JacService.Core.Tests;

/// <summary>
/// What the expansions of Attention and RotaryEmbedding refuse at load, with the reason (OpRows checks what they
/// serve against ONNX Runtime, finite differences and autograd).
/// </summary>
public class StandardFunctionTests
{
    private static readonly Dictionary<string, (Action<OnnxBuilder> Build, string Message)> Refused = new()
    {
        ["Attention before opset 23"] = (g =>
        {
            g.Opset = 22;
            g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4)]);
        }, "Attention is defined from opset 23; the model imports opset 22"),
        ["qk_matmul_output"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", 4, [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4)]);
        }, "the output qk_matmul_output is not served (it is a diagnostic); export without it"),
        ["past_key without past_value"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", 2, [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), "", g.X(2, 2, 1, 4)]);
        }, "past_key and past_value come together; the node has past_key only"),
        ["3-D without head counts"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", [g.X(2, 3, 8), g.X(2, 3, 8), g.X(2, 3, 8)], ("q_num_heads", 2));
        }, "3-D inputs need q_num_heads and kv_num_heads above 0; the node has 2 and 0"),
        ["a mask of a type the graph does not say"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.Node("Relu", [g.W(3, 3)])]);
        }, "the graph does not say whether attn_mask"),
        ["an integer mask"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.X(2, 2, 3, 4), g.IntsShaped([3, 3], 1, 0, 0, 1, 1, 0, 1, 1, 1)]);
        }, "has ONNX element type 7; expected bool or Q's float type"),
        ["Attention without V"] = (g =>
        {
            g.Opset = 23;
            g.Node("Attention", [g.X(2, 2, 3, 4), g.X(2, 2, 3, 4)]);
        }, "Attention takes Q, K, V; the node has no V (input 2)"),
        ["RotaryEmbedding without sin_cache"] = (g =>
        {
            g.Opset = 23;
            g.Node("RotaryEmbedding", [g.X(2, 2, 3, 4), g.W(2, 3, 2), ""]);
        }, "RotaryEmbedding takes X, cos_cache, sin_cache; the node has no sin_cache (input 2)"),
        ["RotaryEmbedding of an odd size"] = (g =>
        {
            g.Opset = 23;
            g.Node("RotaryEmbedding", [g.X(2, 2, 3, 4), g.W(2, 3, 2), g.W(2, 3, 2)], ("rotary_embedding_dim", 3));
        }, "rotary_embedding_dim 3 is not an even size (0 for the whole head)"),
        ["RotaryEmbedding 3-D without num_heads"] = (g =>
        {
            g.Opset = 23;
            g.Node("RotaryEmbedding", [g.X(2, 3, 8), g.W(2, 3, 4), g.W(2, 3, 4)]);
        }, "a 3-D input needs num_heads above 0; the node has 0"),
    };

    public static TheoryData<string> RefusedNames => new(Refused.Keys);

    [Theory]
    [MemberData(nameof(RefusedNames))]
    public void WhatAnExpansionDoesNotWriteIsRefusedAtLoadWithTheReason(string name)
    {
        var (build, expected) = Refused[name];
        string message = LoadRefusal.Of(build);
        Assert.Contains(expected, message);
        Assert.Contains("node 'Attention_", message.Replace("RotaryEmbedding_", "Attention_"));
    }

    /// <summary>Each call becomes a few dozen nodes: the count is checked as they are written, not after.</summary>
    [Fact]
    public void ExpandedNodesCountAgainstTheNodeLimit()
    {
        var g = new OnnxBuilder(23);
        var x = g.X(2, 2, 3, 4);
        for (int i = 0; i < 4; i++) x = g.Node("Attention", [x, x, x]);
        var limits = new EngineLimits { Model = new ModelLimits { MaxNodes = 100 } };
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("many attentions", 1, g.ToBytes(), limits));
        Assert.Contains("with its Attention nodes expanded into the ops they are defined by, over Limits:MaxNodes", e.Message);
        using var model = ModelVersion.Load("one attention", 1, g.ToBytes(), new EngineLimits());
    }
}
