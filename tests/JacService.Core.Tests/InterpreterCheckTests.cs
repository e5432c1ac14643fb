using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx.Proto;
using JacService.Testing;
using Google.Protobuf;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// What ONNX Runtime serves (Predict, compiled derivative graphs) is checked against the interpreter on the first batches
/// (Engine:CheckAgainstInterpreter) and taken out of service where it disagrees. The fault stands in as ONNX Runtime's
/// sessions reading a retrained copy of the file (<see cref="ModelVersion.LoadMismatched"/>): same graph, other
/// numbers, as a weight read in the wrong shape or a rule that does not match the engine's would give. Graphs and
/// sessions that agree keep serving: every fixture and op row (OnnxRuntimePredictTests, CompiledDerivativesTests).
/// </summary>
public class InterpreterCheckTests
{
    private static byte[] Bytes(string fixture) => File.ReadAllBytes(Fixtures.ModelPath(fixture));

    private static byte[] Retrained(string fixture) => Retraining.Of(ModelProto.Parser.ParseFrom(Bytes(fixture))).ToByteArray();

    private static HostTensor[] Inputs(ModelVersion model, int rows)
    {
        var rng = new Random(rows);
        return model.Inputs.Select(i =>
        {
            long[] shape = [rows, .. i.Shape[1..]];
            return new HostTensor(shape, Enumerable.Range(0, (int)HostTensor.Elements(shape)).Select(_ => rng.NextSingle()).ToArray());
        }).ToArray();
    }

    private static void AssertSame(IReadOnlyDictionary<string, HostTensor> expected, IReadOnlyDictionary<string, HostTensor> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected)
        {
            Assert.Equal(e.Shape, actual[name].Shape);
            Assert.Equal(e.Data.AsSpan(0, (int)e.Count).ToArray(), actual[name].Data.AsSpan(0, (int)e.Count).ToArray());
        }
    }

    [Theory]
    [InlineData("mlp_tanh", 1)]
    [InlineData("small_cnn", 3)]
    public void APredictThatDisagreesIsServedByTheEngineFromThen(string fixture, int rows)
    {
        using var model = ModelVersion.LoadMismatched(fixture, Bytes(fixture), Retrained(fixture), new EngineLimits());
        var reasons = new List<string>();
        model.PredictFellBackToEngine += reasons.Add;
        Assert.Equal("onnxruntime", model.PredictRuntime);
        using var scope = NewDisposeScope();

        var x = Inputs(model, rows);
        var served = model.Predict(x);
        AssertSame(model.PredictInEngine(x).Outputs, served.Outputs);
        Assert.Equal("engine", model.PredictRuntime);
        Assert.Matches($"^ONNX Runtime was retired from Predict: its result on a batch of {rows} disagreed with the interpreter's: output '.+' differs from the interpreter's by .+ root mean square, "
            + @"[\d.]+ % of its scale \(.+\); most at element [\d,]+: .+ where the interpreter gives .+$", Assert.Single(reasons));
        Assert.Equal(reasons[0], model.PredictRuntimeNote);

        var more = Inputs(model, 5);
        AssertSame(model.PredictInEngine(more).Outputs, model.Predict(more).Outputs);
        Assert.Single(reasons);
    }

    /// <summary>The stand-in fault is one: unchecked, ONNX Runtime serves the retrained numbers.</summary>
    [Fact]
    public void WithoutTheCheckOnnxRuntimeServesWhatItComputes()
    {
        using var model = ModelVersion.LoadMismatched("mlp_tanh", Bytes("mlp_tanh"), Retrained("mlp_tanh"), new EngineLimits { CheckAgainstInterpreter = false });
        using var scope = NewDisposeScope();
        var x = Inputs(model, 2);
        var served = model.Predict(x).Outputs.Values.Single();
        var engine = model.PredictInEngine(x).Outputs.Values.Single();
        Assert.NotNull(ResultAgreement.Disagreement(engine, served));
        Assert.Equal(("onnxruntime", ""), (model.PredictRuntime, model.PredictRuntimeNote));
    }

    /// <summary>
    /// A batch the engine cannot run is ONNX Runtime's, unchecked: neither the check nor the timing of the two fails a
    /// call that ONNX Runtime answers. The stand-in: the engine's copy reshapes to one sample's shape, ONNX Runtime's to
    /// any number of rows; both add the result to the input.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ABatchTheEngineCannotRunIsServedByOnnxRuntime(bool calibrate)
    {
        static byte[] Doubling(params long[] shape)
        {
            var g = new OnnxBuilder(opset: 14);
            var x = g.X(1, 4);
            g.Declare(x, 1);
            g.Node("Add", [x, g.Node("Reshape", [x, g.Ints(shape)])]);
            return g.ToBytes();
        }
        using var model = ModelVersion.LoadMismatched("one_row_engine", Doubling(4), Doubling(-1, 4), new EngineLimits { CalibrateAuto = calibrate });
        using var scope = NewDisposeScope();
        var two = Inputs(model, 2);
        Assert.ThrowsAny<Exception>(() => model.PredictInEngine(two));
        foreach (var x in new[] { Inputs(model, 1), two, two })
        {
            var y = model.Predict(x).Outputs.Values.Single();
            Assert.Equal(x[0].Data.Select(v => v + v), y.Data.AsSpan(0, (int)y.Count).ToArray());
        }
        Assert.Equal(("onnxruntime", ""), (model.PredictRuntime, model.PredictRuntimeNote));
    }

    /// <summary>
    /// Each batch size Predict has run is listed with what serves it: timed both ways where calibration is on, else
    /// ONNX Runtime's untimed (after its check). Which is faster is not asserted (no timings in tests); both give the
    /// same outputs (OnnxRuntimePredictTests).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PredictChoicesListEachBatchSize(bool calibrate)
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, Bytes("mlp_tanh"), new EngineLimits { CalibrateAuto = calibrate });
        using var scope = NewDisposeScope();
        foreach (int rows in new[] { 3, 1, 3 }) model.Predict(Inputs(model, rows));
        Assert.Equal([1L, 3L], model.PredictChoices.Select(c => c.Batch));
        foreach (var c in model.PredictChoices)
        {
            Assert.Equal(calibrate, c.Timed);
            if (calibrate) Assert.True(c.OnnxRuntimeMicroseconds > 0 && c.EngineMicroseconds > 0, c.ToString());
            else Assert.Equal(("onnxruntime", 0.0, 0.0), (c.Runtime, c.OnnxRuntimeMicroseconds, c.EngineMicroseconds));
            Assert.Contains(c.Runtime, new[] { "onnxruntime", "engine" });
        }
    }

    public static TheoryData<bool, string> CalibrationAndKinds => new()
    {
        { true, "jacobian Forward" }, { false, "jacobian Reverse" }, { true, "vjp" }, { false, "jvp" },
    };

    [Theory]
    [MemberData(nameof(CalibrationAndKinds))]
    public void ACompiledGraphThatDisagreesIsTakenOutOfService(bool calibrate, string kind)
    {
        var limits = new EngineLimits { CalibrateAuto = calibrate };
        using var model = ModelVersion.LoadMismatched("mlp_tanh", Bytes("mlp_tanh"), Retrained("mlp_tanh"), limits);
        using var reference = ModelVersion.Load("mlp_tanh", 1, Bytes("mlp_tanh"), limits with { CompileDerivatives = false });
        var fellBack = new List<string>();
        model.DerivativeFellBackToEngine += (_, why) => fellBack.Add(why);
        using var scope = NewDisposeScope();
        EngineResult Call(ModelVersion m, int rows)
        {
            var x = Inputs(m, rows);
            HostTensor Direction(long[] sample) =>
                new([rows, .. sample], Enumerable.Range(0, (int)(rows * HostTensor.Elements(sample))).Select(i => MathF.Sin(i)).ToArray());
            return kind switch
            {
                "jacobian Forward" => m.Jacobian(x, 0, [0], DerivativeMode.Forward),
                "jacobian Reverse" => m.Jacobian(x, 0, [0], DerivativeMode.Reverse),
                "jvp" => m.Jvp(x, 0, [0], Direction(m.Inputs[0].Shape[1..])),
                _ => m.Vjp(x, 0, [0], [Direction(m.OutputSampleShape(x, 0))]),
            };
        }

        var served = Call(model, 4);
        Assert.False(served.Compiled);
        var expected = Call(reference, 4);
        AssertSame(expected.Outputs, served.Outputs);
        AssertSame(expected.Jacobians, served.Jacobians);
        var entry = Assert.Single(model.CompiledDerivatives);
        Assert.Equal(kind, entry.Kind);
        Assert.False(entry.Compiled);
        Assert.Matches("^its result on a batch of 4 disagreed with the interpreter's: (output|derivative) '.+' differs from the interpreter's by ", entry.Note);
        Assert.Equal(entry.Note, Assert.Single(fellBack));

        // Out of service for every batch size, reported once.
        Assert.False(Call(model, 2).Compiled);
        Assert.Single(fellBack);
    }

    [Fact]
    public void AGraphThatAgreesServesWithoutTiming()
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, Bytes("mlp_tanh"), new EngineLimits { CalibrateAuto = false });
        using var scope = NewDisposeScope();
        Assert.True(model.Jacobian(Inputs(model, 3), 0, [0], DerivativeMode.Reverse).Compiled, model.CompiledDerivatives.Single().Note);
    }
}
