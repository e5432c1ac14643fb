using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// Models at the opsets newer exporters write (PyTorch's dynamo exporter writes 18 and up): the fixtures rewritten at
/// opsets 18, 20 and 26 (<see cref="OpsetUpgrade"/>) serve their functorch references as they do at their own, and what
/// an opset does not define is refused at load with the reason.
/// </summary>
public class LaterOpsetTests
{
    public static TheoryData<string, int> ModelsAndOpsets
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (var name in Fixtures.Names)
                foreach (var opset in new[] { 18, 20, 26 }) data.Add(name, opset);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndOpsets))]
    public void AFixtureAtALaterOpsetServesItsReferences(string name, int opset)
    {
        var reference = Fixtures.Load(name);
        var original = File.ReadAllBytes(Fixtures.ModelPath(name));
        // Without calibration a compiled graph serves wherever one is built, so both say which graphs compiled.
        var limits = new EngineLimits { CalibrateAuto = false };
        using var model = ModelVersion.Load(name, 1, OpsetUpgrade.To(original, opset), limits);
        using var asExported = ModelVersion.Load(name, 1, original, limits);
        Assert.Equal(opset, model.Graph.Opset);
        // ONNX Runtime loaded the file at that opset: Predict and the compiled derivative graphs run there.
        Assert.True(model.PredictRuntime == "onnxruntime", model.PredictRuntimeNote);

        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);
        var predicted = model.Predict(inputs);
        foreach (var (output, expected) in reference.Outputs)
            Compare.Close(expected, predicted.Outputs[output].Shape, predicted.Outputs[output].Data, 1e-4, $"{name}.{output} at opset {opset}");
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
            foreach (var (wrt, perOutput) in reference.Jacobians)
            {
                var result = model.Jacobian(inputs, model.ResolveWrt(wrt), model.ResolveOf([]), mode);
                foreach (var (output, expected) in perOutput)
                    Compare.Close(expected, result.Jacobians[output].Shape, result.Jacobians[output].Data, 1e-4, $"{name} d{output}/d{wrt} ({mode}) at opset {opset}");
                // The same graphs compile at either opset (the reductions' axes, an input from 18, included).
                Assert.True(asExported.Jacobian(inputs, model.ResolveWrt(wrt), model.ResolveOf([]), mode).Compiled == result.Compiled,
                    string.Join("; ", model.CompiledDerivatives.Select(d => d.Note)));
            }
    }

    /// <summary>Models each opset refuses, built around one node, with what the refusal must say.</summary>
    private static readonly Dictionary<string, (Action<OnnxBuilder> Build, string Message)> Refused = new()
    {
        ["opset 27"] = (g => { g.Opset = 27; g.Node("Relu", [g.X(2, 3)]); }, "opset 27 is not supported; export with an opset from 13 to 26"),
        ["opset 12"] = (g => { g.Opset = 12; g.Node("Relu", [g.X(2, 3)]); }, "opset 12 is not supported; export with an opset from 13 to 26"),
        ["Gelu at opset 17"] = (g => { g.Opset = 17; g.Node("Gelu", [g.X(2, 3)]); }, "Gelu is defined from opset 20; the model imports opset 17"),
        ["Mish at opset 17"] = (g => { g.Opset = 17; g.Node("Mish", [g.X(2, 3)]); }, "Mish is defined from opset 18; the model imports opset 17"),
        ["LayerNormalization at opset 16"] = (g => { g.Opset = 16; g.Node("LayerNormalization", [g.X(2, 3), g.W(3)]); },
            "LayerNormalization is defined from opset 17; the model imports opset 16"),
        ["AveragePool with dilations"] = (g =>
        {
            g.Opset = 19;
            g.Node("AveragePool", [g.X(1, 2, 6, 6)], ("kernel_shape", new[] { 2, 2 }), ("dilations", new[] { 2, 1 }));
        }, "dilations [2, 1] are not supported"),
        ["Split num_outputs other than its outputs"] = (g => { g.Opset = 18; g.Node("Split", 2, [g.X(2, 6)], ("axis", 1), ("num_outputs", 3)); },
            "num_outputs is 3 but the node has 2 outputs"),
        ["Split with sizes and num_outputs"] = (g => { g.Opset = 18; g.Node("Split", 2, [g.X(2, 6), g.Ints(2, 4)], ("axis", 1), ("num_outputs", 2)); },
            "has both a split input and num_outputs"),
        ["Resize antialias before opset 18"] = (g => { g.Opset = 17; g.Node("Resize", [g.X(1, 2, 4), "", g.Const([1, 1, 0.5], 3)], ("mode", "linear"), ("antialias", 1)); },
            "the attribute antialias arrived in opset 18 (the model's is 17)"),
        ["Resize half_pixel_symmetric before opset 19"] = (g =>
        {
            g.Opset = 18;
            g.Node("Resize", [g.X(1, 2, 4), "", g.Const([1, 1, 2], 3)], ("mode", "linear"), ("coordinate_transformation_mode", "half_pixel_symmetric"));
        }, "coordinate_transformation_mode 'half_pixel_symmetric' is not one of half_pixel, pytorch_half_pixel, align_corners, asymmetric at opset 18"),
        ["DepthToSpace in another mode"] = (g => g.Node("DepthToSpace", [g.X(1, 8, 2, 2)], ("blocksize", 2), ("mode", "RCD")),
            "DepthToSpace mode must be DCR or CRD, got 'RCD'"),
        ["SpaceToDepth without a blocksize"] = (g => g.Node("SpaceToDepth", [g.X(1, 2, 4, 4)]), "SpaceToDepth needs a blocksize of 1 or more, got 0"),
        ["Resize tf_crop_and_resize"] = (g =>
            g.Node("Resize", [g.X(1, 2, 4), g.Const([0, 0, 0.2, 1, 1, 0.8], 6), g.Const([1, 1, 2], 3)], ("mode", "linear"), ("coordinate_transformation_mode", "tf_crop_and_resize")),
            "coordinate_transformation_mode 'tf_crop_and_resize' is not supported; export a plain resize and crop with Slice"),
        ["Resize aspect-ratio policy on axes from the back"] = (g =>
        {
            g.Opset = 18;
            g.Node("Resize", [g.X(1, 2, 4, 6), "", "", g.Ints(2, 2)], ("axes", new long[] { -2, -1 }), ("keep_aspect_ratio_policy", "not_smaller"));
        }, "keep_aspect_ratio_policy with axes counted from the back ([-2, -1]) is not supported: ONNX Runtime leaves them unresized; name the axes from the front"),
        ["Shape start before opset 15"] = (g => { g.Opset = 14; g.Node("Shape", [g.X(2, 3)], ("start", 1)); }, "the attributes start and end arrived in opset 15 (the model's is 14)"),
        ["CastLike before opset 15"] = (g => { g.Opset = 14; g.Node("CastLike", [g.X(2, 3), g.W(1)]); }, "CastLike is defined from opset 15; the model imports opset 14"),
        ["Pad wrap before opset 19"] = (g => { g.Opset = 18; g.Node("Pad", [g.X(2, 3), g.Ints(0, 1, 0, 1)], ("mode", "wrap")); },
            "mode 'wrap' is not supported (constant, reflect, edge)"),
    };

    public static TheoryData<string> RefusedNames => new(Refused.Keys);

    [Theory]
    [MemberData(nameof(RefusedNames))]
    public void WhatAnOpsetDoesNotDefineIsRefusedAtLoad(string name)
    {
        var (build, message) = Refused[name];
        var g = new OnnxBuilder();
        build(g);
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load(name, 1, g.ToBytes(), new EngineLimits()));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("scales and sizes", "Resize takes scales or sizes, not both")]
    [InlineData("neither", "Resize takes scales or sizes, and has neither")]
    [InlineData("a scale per axis of another rank", "Resize scales give 2 values for 3 axes of [1, 2, 3]")]
    [InlineData("a negative scale", "Resize scale -2 for axis 2 is not a positive number")]
    [InlineData("an antialiasing filter too wide", "Resize's antialiasing filter at a scale of 0.0001 reads 20002 input positions per output; " +
        "at most 1024 are supported (a scale of at least 0.002)")]
    public void AResizeItCannotApplyIsRefusedWithTheReason(string what, string message)
    {
        var g = new OnnxBuilder(what.StartsWith("an antialiasing") ? 18 : 13);
        var x = g.X(1, 2, 3);
        _ = what switch
        {
            "an antialiasing filter too wide" => g.Node("Resize", [x, "", g.Const([1, 1, 0.0001], 3)], ("mode", "linear"), ("antialias", 1)),
            "scales and sizes" => g.Node("Resize", [x, "", g.Const([1, 1, 2], 3), g.Ints(1, 2, 6)]),
            "neither" => g.Node("Resize", [x, ""]),
            "a scale per axis of another rank" => g.Node("Resize", [x, "", g.Const([1, 2], 2)]),
            _ => g.Node("Resize", [x, "", g.Const([1, 1, -2], 3)]),
        };
        // The batch axis is dynamic, so the node is first planned for a request (a static graph is refused at load);
        // ONNX Runtime refuses Predict's session for some of these, and Predict falls back to the engine.
        using var model = ModelVersion.Load(what, 1, OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() => model.Jacobian([new HostTensor([1, 2, 3], new float[6])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("wrap wider than the axis", "Pad mode 'wrap' pads [0, 4, 0, 4] of [2, 3]; at most each axis's length is supported")]
    [InlineData("axes repeated", "Pad axes [1, -1] repeat an axis")]
    [InlineData("pads for other axes than named", "Pad needs 2 pads (a begin and an end for each of 1 axes), got 4")]
    public void APadItCannotApplyIsRefusedWithTheReason(string what, string message)
    {
        var g = new OnnxBuilder(19);
        var x = g.X(2, 3);
        _ = what switch
        {
            "wrap wider than the axis" => g.Node("Pad", [x, g.Ints(0, 4, 0, 4)], ("mode", "wrap")),
            "axes repeated" => g.Node("Pad", [x, g.Ints(1, 1, 1, 1), "", g.Ints(1, -1)]),
            _ => g.Node("Pad", [x, g.Ints(1, 1, 1, 1), "", g.Ints(1)]),
        };
        using var model = ModelVersion.Load(what, 1, g.ToBytes(), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        // Predict runs in ONNX Runtime; a derivative runs the engine's Pad (a compiled graph refuses these and falls back).
        var e = Assert.Throws<NodeEvaluationException>(() => model.Jacobian([new HostTensor([2, 3], new float[6])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("DepthToSpace", new long[] { 1, 6, 2, 2 }, "DepthToSpace with blocksize 2 needs C divisible by 4, got [1, 6, 2, 2]")]
    [InlineData("SpaceToDepth", new long[] { 1, 2, 4, 3 }, "SpaceToDepth with blocksize 2 needs H and W divisible by 2, got [1, 2, 4, 3]")]
    [InlineData("SpaceToDepth", new long[] { 1, 4, 4 }, "SpaceToDepth takes an input of rank 4 [N, C, H, W], got [1, 4, 4]")]
    public void ABlockRearrangementOfTheWrongShapeIsRefusedWithTheReason(string op, long[] shape, string message)
    {
        var g = new OnnxBuilder();
        g.Node(op, [g.X(shape)], ("blocksize", 2));
        using var model = ModelVersion.Load(op, 1, g.ToBytes(), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() =>
            model.Jacobian([new HostTensor(shape, new float[shape.Aggregate(1L, (p, d) => p * d)])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData(new long[] { 2, 4 }, new long[] { 0, 4 }, 0, "GatherND index 4 is outside [-4, 3] of axis 1")]
    [InlineData(new long[] { 2, 4 }, new long[] { 1, 0, 1 }, 0, "GatherND indices [1, 3] do not end in a tuple length from 1 to 2 (the data [2, 4] past batch_dims 0)")]
    [InlineData(new long[] { 3, 4 }, new long[] { 1, 2 }, 1, "GatherND batch_dims 1 must name leading axes the data [3, 4] and the indices [2, 1] share")]
    public void AGatherNdOutsideItsDataIsRefusedWithTheReason(long[] data, long[] tuples, int batchDims, string message)
    {
        var g = new OnnxBuilder();
        long[] shape = batchDims == 1 ? [tuples.Length, 1] : [1, tuples.Length];
        g.Node("GatherND", [g.X(data), g.IntsShaped(shape, tuples)], ("batch_dims", batchDims));
        using var model = ModelVersion.Load("gathernd", 1, g.ToBytes(), new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<NodeEvaluationException>(() =>
            model.Jacobian([new HostTensor(data, new float[data.Aggregate(1L, (p, d) => p * d)])], 0, [0], DerivativeMode.Forward));
        Assert.Contains(message, e.Message);
    }
}
