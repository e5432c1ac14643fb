using Google.Protobuf;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using Xunit;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>Files that differ in their weights only share a structure key, and a successor takes AUTO's choices from such a predecessor.</summary>
public sealed class ModelStructureTests
{
    private static ModelProto Parse(string fixture) => ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.ModelPath(fixture)));

    private static ModelVersion Load(ModelProto model, int version = 1) => ModelVersion.Load("m", version, model.ToByteArray(), new EngineLimits());

    [Theory]
    [InlineData("mlp_tanh")]
    [InlineData("small_cnn")]
    [InlineData("layernorm_gelu")]
    public void NewWeightsKeepTheStructureAndAnotherGraphDoesNot(string fixture)
    {
        var original = Parse(fixture);
        using var first = Load(original);
        using var retrained = Load(Retraining.Of(original));
        using var other = Load(Parse(fixture == "mlp_tanh" ? "wide_classifier" : "mlp_tanh"));
        Assert.Equal(first.Graph.Structure, retrained.Graph.Structure);
        Assert.NotEqual(first.Graph.Structure, other.Graph.Structure);

        // A changed attribute (here a node's name would not matter; an operator's attribute does).
        var changed = original.Clone();
        var node = changed.Graph.Node.First(n => n.Attribute.Count > 0);
        var attribute = node.Attribute[0];
        if (attribute.HasI) attribute.I += 1;
        else if (attribute.HasF) attribute.F += 1;
        else attribute.Ints.Add(1);
        Assert.NotEqual(first.Graph.Structure, ModelStructure.Key(changed));
    }

    [Fact]
    public void ASuccessorOfTheSameStructureRunsItsPredecessorsChoicesWithoutTimingThem()
    {
        var original = Parse("wide_classifier");
        using var predecessor = Load(original);
        using var successor = Load(Retraining.Of(original), version: 2);
        // Reverse is over 10x faster here at batch 8 (10 outputs, 128 inputs): a choice of Forward can only come from adoption.
        var planted = new DerivativeChoice("x", ["logits"], 8, DerivativeMode.Forward, 1, 2, Timed: true);
        Assert.Equal("x", predecessor.Inputs[0].Name);
        Assert.Equal(1, successor.AdoptDerivativeChoices(predecessor.Graph.Structure, [planted]));
        Assert.Equal([planted], successor.DerivativeChoices);

        var rng = new Random(1);
        var inputs = new[] { new HostTensor([8, 128], Enumerable.Range(0, 8 * 128).Select(_ => rng.NextSingle()).ToArray()) };
        using (NewDisposeScope())
            Assert.Equal(DerivativeMode.Forward, successor.Jacobian(inputs, 0, [0], DerivativeMode.Auto).Mode);

        using var stranger = Load(Parse("mlp_tanh"));
        Assert.Equal(0, stranger.AdoptDerivativeChoices(predecessor.Graph.Structure, [planted]));
        Assert.Empty(stranger.DerivativeChoices);
    }
}
