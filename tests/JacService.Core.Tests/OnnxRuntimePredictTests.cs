using JacService.Core.Models;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using TorchSharp;

namespace JacService.Core.Tests;

/// <summary>
/// Predict served by ONNX Runtime against the engine's own forward pass (the reference), per fixture and batch size;
/// OpForwardOrtTests compares every op row's forward with ORT the same way. A model ORT cannot serve falls back to
/// the engine and says why.
/// </summary>
public class OnnxRuntimePredictTests
{
    public static TheoryData<string, int> ModelsAndBatches
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (var name in Fixtures.Names)
                foreach (var batch in new[] { 1, 3, 16 }) data.Add(name, batch);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndBatches))]
    public void OnnxRuntimeEqualsTheEngine(string name, int batch)
    {
        // Untimed, so that ONNX Runtime serves every batch size rather than whichever of it and the engine is faster.
        using var model = ModelVersion.Load(name, 1, File.ReadAllBytes(Fixtures.ModelPath(name)), new EngineLimits { CalibrateAuto = false });
        Assert.Equal(("onnxruntime", ""), (model.PredictRuntime, model.PredictRuntimeNote));
        var rng = new Random(batch);
        var inputs = model.Inputs.Select(i =>
        {
            long[] shape = [batch, .. i.Shape[1..]];
            return new HostTensor(shape, Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        }).ToArray();
        using var scope = torch.NewDisposeScope();
        var served = model.Predict(inputs);
        var reference = model.PredictInEngine(inputs);
        // Still ONNX Runtime's: its first batch was checked against the engine's and agreed (InterpreterCheckTests).
        Assert.Equal(("onnxruntime", ""), (model.PredictRuntime, model.PredictRuntimeNote));
        foreach (var (output, expected) in reference.Outputs)
        {
            var actual = served.Outputs[output];
            Assert.Equal(expected.Shape, actual.Shape);
            float scale = Math.Max(1e-3f, expected.Data.Max(MathF.Abs));
            for (int i = 0; i < expected.Data.Length; i++)
                Assert.True(MathF.Abs(expected.Data[i] - actual.Data[i]) <= 2e-5f * scale,
                    $"{name}.{output}[{i}] at batch {batch}: engine {expected.Data[i]}, onnxruntime {actual.Data[i]}");
        }
    }

    [Fact]
    public void AModelWithANonFloatOutputIsServedByTheEngineAndSaysWhy()
    {
        var g = new OnnxBuilder();
        var x = g.X(2, 3);
        g.Output(g.Node("Relu", [x]));
        g.Output(g.Node("Cast", [x], ("to", OnnxType.Int64)), OnnxType.Int64);
        using var model = ModelVersion.Load("cast", 1, g.ToBytes(), new EngineLimits());
        Assert.Equal("engine", model.PredictRuntime);
        Assert.Contains("is int64; ONNX Runtime serves Predict for float32 inputs and outputs only", model.PredictRuntimeNote);
    }

    [Fact]
    public void OnnxRuntimeCanBeTurnedOff()
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), new EngineLimits { PredictWithOnnxRuntime = false });
        Assert.Equal(("engine", ""), (model.PredictRuntime, model.PredictRuntimeNote));
    }
}
