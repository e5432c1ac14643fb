using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using TorchSharp;
using static JacService.Core.Tests.HostileModels;

namespace JacService.Core.Tests;

/// <summary>
/// Model-local functions, inlined at load: the fixtures torch 1.13 exports with export_modules_as_functions (every module
/// class a function, nested; tests/fixtures/functions) serve their references, and hand-built files show attributes
/// bound through ref_attr_name and what is refused.
/// </summary>
public class LocalFunctionTests
{
    private static string[] ExportedNames => Directory.GetFiles(Path.Combine(Fixtures.Root, "tests", "fixtures", "functions"), "*.onnx")
        .Select(path => Path.GetFileNameWithoutExtension(path)).Order().ToArray();

    public static TheoryData<string> Exported => new(ExportedNames);

    /// <summary>Every fixture torch exported at opset 15 or later (spectral, written node by node, has no modules to export).</summary>
    [Fact]
    public void EveryFixtureFromOpset15HasAFunctionExport()
    {
        var expected = Fixtures.Names.Where(name => ByTorch(Fixtures.ModelPath(name)) && Opset(Fixtures.ModelPath(name)) >= 15).Order();
        Assert.Equal(expected, ExportedNames);
    }

    private static bool ByTorch(string path) => ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).ProducerName == "pytorch";

    [Theory]
    [MemberData(nameof(Exported))]
    public void AFunctionExportServesItsFixturesReferences(string name)
    {
        var reference = Fixtures.Load(name);
        var bytes = File.ReadAllBytes(Path.Combine(Fixtures.Root, "tests", "fixtures", "functions", name + ".onnx"));
        Assert.NotEmpty(ModelProto.Parser.ParseFrom(bytes).Functions);
        // Untimed: with the timing on, a loaded machine can make the interpreter the faster way for a size, and the
        // assertion below is about the graph being written, not about which way wins (sequences, once in CI).
        using var model = ModelVersion.Load(name, 1, bytes, new EngineLimits { CalibrateAuto = false });
        using var scope = torch.NewDisposeScope();
        var inputs = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Shape, p.Value.Floats)), batched: true);

        var predicted = model.Predict(inputs);
        foreach (var (output, expected) in reference.Outputs)
            Compare.Close(expected, predicted.Outputs[output].Shape, predicted.Outputs[output].Data, 1e-4, $"{name}.{output}");
        foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
            foreach (var (wrt, perOutput) in reference.Jacobians)
            {
                var result = model.Jacobian(inputs, model.ResolveWrt(wrt), model.ResolveOf([]), mode);
                // The derivative graphs are written from the inlined graph too.
                Assert.True(result.Compiled);
                foreach (var (output, expected) in perOutput)
                    Compare.Close(expected, result.Jacobians[output].Shape, result.Jacobians[output].Data, 1e-4, $"{name} d{output}/d{wrt} ({mode})");
            }
        if (reference.Hessians is not { } hessians) return;
        foreach (var (wrt, perOutput) in hessians)
        {
            int samples = (int)perOutput.First().Value.Shape[0];
            var first = model.ValidateInputs(reference.Inputs.ToDictionary(p => p.Key, p => new HostTensor(p.Value.Take(samples).Shape, p.Value.Take(samples).Floats)), batched: true);
            var result = model.Hessian(first, model.ResolveWrt(wrt), model.ResolveOf([]), includeJacobian: false);
            foreach (var (output, expected) in perOutput)
                Compare.Close(expected, result.SecondOrder[output].Shape, result.SecondOrder[output].Data, 1e-4, $"{name} d2{output}/d{wrt}2");
        }
    }

    [Fact]
    public void AnErrorInsideAFunctionNamesTheCallsThatLedThere()
    {
        var bytes = Model([Call("outer", "/Model", ["x"], "y")], functions:
        [
            Function("outer", [Call("inner", "Block_0", ["x"], "y")]),
            Function("inner", [Node("Transpose", "Transpose_3", ["x"], "y", Attr("perm", [0, 1, 2]))]),
        ]);
        // The input's axes after the batch are static, so the load plans one sample and meets the error there.
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("nested", 1, bytes, new EngineLimits()));
        Assert.Contains("node '/Model/Block_0/Transpose_3' (Transpose): Transpose perm [0, 1, 2] is not a permutation of rank 2", e.Message);
    }

    /// <summary>
    /// A body attribute that refers to the function's takes the call's value, else the function's default, else is left
    /// out (LeakyRelu's own default, 0.01).
    /// </summary>
    [Fact]
    public void ReferencedAttributesTakeTheCallsValueThenTheDefault()
    {
        var leaky = new AttributeProto { Name = "alpha", RefAttrName = "slope", Type = AttributeProto.Types.AttributeType.Float };
        var withDefault = Function("leaky", [Node("LeakyRelu", "l", ["x"], "y", leaky)],
            new AttributeProto { Name = "slope", F = 0.5f, Type = AttributeProto.Types.AttributeType.Float });
        var withoutDefault = Function("bare", [Node("LeakyRelu", "l", ["x"], "y", leaky)]);
        var bytes = Model(
        [
            Call("leaky", "given", ["x"], "a", new AttributeProto { Name = "slope", F = 0.2f, Type = AttributeProto.Types.AttributeType.Float }),
            Call("leaky", "defaulted", ["x"], "b"),
            Call("bare", "unset", ["x"], "c"),
            Node("Concat", "all", ["a", "b", "c"], "y", Attr("axis", 1)),
        ], functions: [withDefault, withoutDefault]);
        using var model = ModelVersion.Load("attributes", 1, bytes, new EngineLimits());
        using var scope = torch.NewDisposeScope();
        var x = new float[] { -1, -2, 3, -4 };
        var y = model.Predict(model.ValidateInputs(new Dictionary<string, HostTensor> { ["x"] = new([1, 4], x) }, batched: true)).Outputs["y"].Data;
        float[] expected = [.. new[] { 0.2f, 0.5f, 0.01f }.SelectMany(slope => x.Select(v => v < 0 ? slope * v : v))];
        Assert.Equal(expected, y.ToArray());
    }

    [Fact]
    public void AFunctionOfAnotherOpsetIsRefused()
    {
        var f = Function("relu", [Node("Relu", "r", ["x"], "y")]);
        f.OpsetImport[0].Version = 17;
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("opsets", 1, Model([Call("relu", "call", ["x"], "y")], functions: [f]), new EngineLimits()));
        Assert.Contains("function 'local.relu' imports opset 17 where the model imports 13; export it with the model's opset", e.Message);
    }

    [Fact]
    public void AFunctionDefinedTwiceIsRefused()
    {
        var f = Function("relu", [Node("Relu", "r", ["x"], "y")]);
        var e = Assert.Throws<ModelLoadException>(() => ModelVersion.Load("twice", 1, Model([Call("relu", "call", ["x"], "y")], functions: [f, f.Clone()]), new EngineLimits()));
        Assert.Contains("function 'local.relu' is defined more than once", e.Message);
    }

    private static long Opset(string path) =>
        ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Max(o => o.Version);
}
