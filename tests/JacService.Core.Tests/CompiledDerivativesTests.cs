using JacService.Core.Compiled;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using JacService.Testing;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Jacobians from compiled derivative graphs (ONNX Runtime) against the interpreter's, per fixture, op row, mode and
/// batch size; and the fallback to the interpreter, which GetModel, the log and a metric show, where a graph cannot be
/// compiled. FixtureReferenceTests compare what is served (compiled where it can be) with functorch in float64.
/// </summary>
public class CompiledDerivativesTests(ITestOutputHelper output)
{
    /// <summary>Compiled graphs serve wherever they compile, not only where timing finds them faster (CompiledPreferenceTests).</summary>
    private static readonly EngineLimits AlwaysCompiled = new() { CalibrateAuto = false };

    public static TheoryData<string, DerivativeMode, int> FixturesModesAndBatches
    {
        get
        {
            var data = new TheoryData<string, DerivativeMode, int>();
            foreach (var name in Fixtures.Names)
                foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse })
                    foreach (var batch in new[] { 1, 3 }) data.Add(name, mode, batch);
            return data;
        }
    }

    public static TheoryData<DerivativeMode> DerivativeModes => new(DerivativeMode.Forward, DerivativeMode.Reverse);

    [Theory]
    [MemberData(nameof(FixturesModesAndBatches))]
    public void FixtureJacobiansEqualTheInterpreters(string name, DerivativeMode mode, int batch)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        using var compiled = ModelVersion.Load(name, 1, bytes, AlwaysCompiled);
        using var interpreted = ModelVersion.Load(name, 1, bytes, new EngineLimits { CompileDerivatives = false });
        var rng = new Random(batch);
        var inputs = compiled.Inputs.Select(i =>
        {
            long[] shape = [batch, .. i.Shape[1..]];
            return new HostTensor(shape, Enumerable.Range(0, (int)Sizes.Elements(shape)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        }).ToArray();
        int wrt = compiled.ResolveWrt(compiled.Inputs[0].Name);
        var of = compiled.ResolveOf([]);

        using var scope = NewDisposeScope();
        var served = compiled.Jacobian(inputs, wrt, of, mode);
        var reference = interpreted.Jacobian(inputs, wrt, of, mode);

        var entry = Assert.Single(compiled.CompiledDerivatives);
        Assert.Equal(mode, entry.Mode);
        Assert.Equal($"jacobian {mode}", entry.Kind);
        // Every op on every fixture's path has a compiled rule.
        Assert.True(served.Compiled, entry.Note);
        Assert.Equal("", entry.Note);
        Assert.False(reference.Compiled);
        Assert.Equal(mode, served.Mode);
        AssertClose($"{name} {mode} batch {batch}", reference.Outputs, served.Outputs);
        AssertClose($"{name} {mode} batch {batch}", reference.Jacobians, served.Jacobians);
    }

    public static TheoryData<string, int?> FixturesAndDirections
    {
        get
        {
            var data = new TheoryData<string, int?>();
            foreach (var name in Fixtures.Names)
                foreach (var directions in new int?[] { null, 3 }) data.Add(name, directions);
            return data;
        }
    }

    /// <summary>A Vjp with one cotangent per sample ([B] ++ out) or T of them ([B, T] ++ out), compiled against the interpreter's.</summary>
    [Theory]
    [MemberData(nameof(FixturesAndDirections))]
    public void FixtureVjpsEqualTheInterpreters(string name, int? directions)
    {
        var (compiled, interpreted, inputs, wrt, of, Random) = Versions(name, seed: 7);
        using var _ = compiled;
        using var __ = interpreted;
        var cotangents = of.Select(o =>
        {
            var sample = compiled.OutputSampleShape(inputs, o);
            return Random(directions is { } t ? [Batch, t, .. sample] : [Batch, .. sample]);
        }).ToArray();

        using var scope = NewDisposeScope();
        var served = compiled.Vjp(inputs, wrt, of, cotangents);
        var reference = interpreted.Vjp(inputs, wrt, of, cotangents);

        var entry = Assert.Single(compiled.CompiledDerivatives);
        Assert.Equal(directions is { } d ? $"vjp of {d}" : "vjp", entry.Kind);
        Assert.True(served.Compiled, entry.Note);
        Assert.True(entry.Compiled);
        AssertClose($"{name} vjp, {directions} directions", reference.Outputs, served.Outputs);
        AssertClose($"{name} vjp, {directions} directions", reference.Jacobians, served.Jacobians);
    }

    private const int Batch = 3;

    /// <summary>
    /// A fixture loaded twice, compiled graphs serving wherever they compile and the interpreter alone, with random inputs
    /// for <see cref="Batch"/> samples, its first input as wrt, every output as of, and the random source for directions.
    /// </summary>
    private static (ModelVersion Compiled, ModelVersion Interpreted, HostTensor[] Inputs, int Wrt, int[] Of, Func<long[], HostTensor> Random)
        Versions(string name, int seed)
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath(name));
        var compiled = ModelVersion.Load(name, 1, bytes, AlwaysCompiled);
        var interpreted = ModelVersion.Load(name, 1, bytes, new EngineLimits { CompileDerivatives = false });
        var rng = new Random(seed);
        HostTensor Random(long[] shape) =>
            new(shape, Enumerable.Range(0, (int)Sizes.Elements(shape)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        var inputs = compiled.Inputs.Select(i => Random([Batch, .. i.Shape[1..]])).ToArray();
        return (compiled, interpreted, inputs, compiled.ResolveWrt(compiled.Inputs[0].Name), compiled.ResolveOf([]), Random);
    }

    /// <summary>A Jvp with one tangent per sample ([B] ++ wrt) or T of them ([B, T] ++ wrt), compiled against the interpreter's.</summary>
    [Theory]
    [MemberData(nameof(FixturesAndDirections))]
    public void FixtureJvpsEqualTheInterpreters(string name, int? directions)
    {
        var (compiled, interpreted, inputs, wrt, of, Random) = Versions(name, seed: 11);
        using var _ = compiled;
        using var __ = interpreted;
        var sample = compiled.Inputs[wrt].Shape[1..];
        var tangents = Random(directions is { } t ? [Batch, t, .. sample] : [Batch, .. sample]);

        using var scope = NewDisposeScope();
        var served = compiled.Jvp(inputs, wrt, of, tangents);
        var reference = interpreted.Jvp(inputs, wrt, of, tangents);

        var entry = Assert.Single(compiled.CompiledDerivatives);
        Assert.Equal(directions is { } d ? $"jvp of {d}" : "jvp", entry.Kind);
        Assert.Equal(DerivativeMode.Forward, entry.Mode);
        Assert.True(served.Compiled, entry.Note);
        Assert.False(reference.Compiled);
        AssertClose($"{name} jvp, {directions} directions", reference.Outputs, served.Outputs);
        AssertClose($"{name} jvp, {directions} directions", reference.Jacobians, served.Jacobians);
    }

    [Fact]
    public void CompiledDerivativesCanBeTurnedOff()
    {
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), new EngineLimits { CompileDerivatives = false });
        var inputs = new[] { new HostTensor([1, 32], new float[32]) };
        using var scope = NewDisposeScope();
        Assert.False(model.Jacobian(inputs, 0, [0], DerivativeMode.Reverse).Compiled);
        Assert.Empty(model.CompiledDerivatives);
        Assert.Contains("Engine:CompileDerivatives is off", model.CompiledDerivativesNote);
    }

    /// <summary>
    /// A request the graph cannot run (a Gather index out of range, which ONNX Runtime refuses) is answered by the
    /// interpreter, which refuses it with the reason; the graph stays in service for the next request.
    /// </summary>
    [Fact]
    public void ABadRequestLeavesTheGraphInService()
    {
        var g = new OnnxBuilder(13);
        var x = g.X(2, 4);
        var indices = g.Node("Cast", [g.Input(Dists.Normal, [2, 2], differentiated: false)], ("to", OnnxType.Int64));
        g.Node("Gather", [g.Node("Tanh", [x]), indices], ("axis", 1));
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var model = ModelVersion.Load("gather", 1, bytes, AlwaysCompiled);
        var data = new HostTensor([2, 4], [0.1f, 0.2f, 0.3f, 0.4f, -0.1f, -0.2f, -0.3f, -0.4f]);
        using var scope = NewDisposeScope();
        var bad = new HostTensor([2, 2], [0, 7, 1, 2]);
        var e = Assert.Throws<NodeEvaluationException>(() => model.Jacobian([data, bad], 0, [0], DerivativeMode.Forward));
        Assert.Contains("Gather", e.Message);
        var good = model.Jacobian([data, new HostTensor([2, 2], [0, 3, 1, 2])], 0, [0], DerivativeMode.Forward);
        Assert.True(good.Compiled, model.CompiledDerivatives.Single().Note);
    }

    /// <summary>
    /// AUTO times the mode with fewer directions first and stops the other once it has run as long. At 1,024 rows of a
    /// 2048-wide MLP with 2 outputs, reverse mode's compiled Jacobian takes a fraction of a second (over the tenth of a
    /// second from which runs are stopped), and forward mode is not given the many times as long it needs: with 256 inputs
    /// its graph would pass the working memory, and its interpreter's probe is stopped while timed; with 8 its compiled
    /// graph is stopped in its first run, inside ONNX Runtime. The choice records forward mode as stopped (infinite), the
    /// Jacobians are reverse mode's, and both graphs stay in service: forward mode, asked for, gives the same Jacobians.
    /// </summary>
    [Theory]
    [InlineData(256)]
    [InlineData(8)]
    public void AutoStopsTheSlowerModeOnceItHasRunAsLongAsTheFasterTook(int inputs)
    {
        var g = new OnnxBuilder(13);
        var h = g.Node("Tanh", [g.Node("MatMul", [g.X(1024, inputs), g.W(Dists.Within(1.0 / inputs), inputs, 2048)])]);
        h = g.Node("Tanh", [g.Node("MatMul", [h, g.W(Dists.Within(0.02), 2048, 2048)])]);
        g.Node("MatMul", [h, g.W(Dists.Within(0.02), 2048, 2)]);
        var bytes = OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        using var model = ModelVersion.Load("wide", 1, bytes, new EngineLimits());
        var rng = new Random(5);
        var x = new HostTensor([1024, inputs], Enumerable.Range(0, 1024 * inputs).Select(_ => (float)rng.NextDouble()).ToArray());
        using var scope = NewDisposeScope();
        var auto = model.Jacobian([x], 0, [0], DerivativeMode.Auto);

        var choice = Assert.Single(model.DerivativeChoices);
        output.WriteLine($"forward {choice.ForwardMicroseconds} us, reverse {choice.ReverseMicroseconds} us");
        Assert.Equal(DerivativeMode.Reverse, auto.Mode);
        Assert.Equal(DerivativeMode.Reverse, choice.Mode);
        Assert.True(choice.Timed);
        Assert.True(choice.ReverseMicroseconds > AlternatingTimer.RepeatFor.TotalMicroseconds, $"reverse mode took {choice.ReverseMicroseconds} us");
        Assert.Equal(double.PositiveInfinity, choice.ForwardMicroseconds);
        using var reference = ModelVersion.Load("wide", 1, bytes, new EngineLimits { CompileDerivatives = false, CalibrateAuto = false });
        AssertClose("wide, AUTO", reference.Jacobian([x], 0, [0], DerivativeMode.Reverse).Jacobians, auto.Jacobians);
        // Stopping a graph's run takes nothing out of service; forward mode on 4 rows (cheap) gives the same Jacobians.
        Assert.All(model.CompiledDerivatives, c => Assert.True(c.Compiled, c.Note));
        var few = new HostTensor([4, inputs], x.Data[..(4 * inputs)]);
        AssertClose("wide, forward mode", reference.Jacobian([few], 0, [0], DerivativeMode.Reverse).Jacobians,
            model.Jacobian([few], 0, [0], DerivativeMode.Forward).Jacobians);
    }

    /// <summary>
    /// A graph over Engine:MaxCompiledNodes is left to the interpreter with the reason: ONNX Runtime's preparation grows with
    /// the square of the graph (18 s for the 10,000 nodes of a scripted RNN unrolled over 512 steps).
    /// </summary>
    [Fact]
    public void AGraphOverTheNodeLimitIsServedByTheInterpreter()
    {
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("scripted_rnn"));
        using var small = ModelVersion.Load("scripted_rnn", 1, bytes, new EngineLimits { MaxCompiledNodes = 50, CalibrateAuto = false });
        using var large = ModelVersion.Load("scripted_rnn", 1, bytes, new EngineLimits { CalibrateAuto = false });
        var rng = new Random(3);
        var x = new HostTensor([2, 6, 3], Enumerable.Range(0, 36).Select(_ => (float)rng.NextDouble()).ToArray());
        using var scope = NewDisposeScope();
        var interpreted = small.Jacobian([x], 0, [0], DerivativeMode.Reverse);
        var compiled = large.Jacobian([x], 0, [0], DerivativeMode.Reverse);
        Assert.False(interpreted.Compiled);
        Assert.Matches(@"^the derivative graph holds \d+ nodes, over Engine:MaxCompiledNodes 50 ", small.CompiledDerivatives.Single().Note);
        Assert.True(compiled.Compiled, large.CompiledDerivatives.Single().Note);
        AssertClose("scripted_rnn", compiled.Jacobians, interpreted.Jacobians);
    }

    /// <summary>
    /// A recurrent node compiles to a Scan whose body is one step, so its graph does not grow with the sequence (unrolled,
    /// ONNX Runtime's preparation of 256 steps took 17-75 s); a long sequence's Jacobians equal the interpreter's.
    /// </summary>
    [Theory]
    [MemberData(nameof(DerivativeModes))]
    public void ARecurrentGraphDoesNotGrowWithTheSequence(DerivativeMode mode)
    {
        static byte[] Lstm(int steps)
        {
            var g = new OnnxBuilder();
            var x = g.Node("Transpose", [g.X(2, steps, 3)], ("perm", new long[] { 1, 0, 2 }));
            var states = g.Node("LSTM", 3, [x, g.W(1, 16, 3), g.W(1, 16, 4), g.W(1, 32)], ("hidden_size", 4));
            g.Node("Concat", [g.Node("Squeeze", [states[1], g.Ints(0)]), g.Node("Squeeze", [states[2], g.Ints(0)])], ("axis", 1L));
            return OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float);
        }
        int Nodes(int steps)
        {
            var bytes = Lstm(steps);
            var limits = new EngineLimits();
            using var graph = OnnxModelReader.Read(bytes, ScalarType.Float32, limits.Model);
            using var parts = new ModelParts(graph, limits);
            using var derivatives = new CompiledDerivatives(KeptModel.From(OnnxModelReader.ParseAsWritten(bytes, limits.Model), limits.Model, held: null), parts, weights: null);
            return derivatives.Write(0, [0], [[2, steps, 3]], mode, null).Model.Graph.Node.Count;
        }
        Assert.Equal(Nodes(8), Nodes(200));

        var lstm = Lstm(40);
        using var compiled = ModelVersion.Load("lstm", 1, lstm, AlwaysCompiled);
        using var interpreted = ModelVersion.Load("lstm", 1, lstm, new EngineLimits { CompileDerivatives = false });
        var rng = new Random(5);
        var x = new HostTensor([3, 40, 3], Enumerable.Range(0, 360).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        using var scope = NewDisposeScope();
        var served = compiled.Jacobian([x], 0, [0], mode);
        Assert.True(served.Compiled, compiled.CompiledDerivatives.Single().Note);
        AssertClose("lstm over 40 steps", interpreted.Jacobian([x], 0, [0], mode).Jacobians, served.Jacobians);
    }

    [Fact]
    public void AFallbackIsReportedOnceWithItsReason()
    {
        using var model = ModelVersion.Load(UncompiledModel.Name, 1, UncompiledModel.Bytes(), new EngineLimits());
        var reports = new List<(string What, string Why)>();
        model.DerivativeFellBackToEngine += (what, why) => reports.Add((what, why));
        var shape = model.Inputs[0].Shape;
        var inputs = new[] { new HostTensor([1, .. shape[1..]], new float[Sizes.Elements(shape[1..])]) };
        using var scope = NewDisposeScope();
        for (int call = 0; call < 3; call++) model.Jacobian(inputs, 0, [0], DerivativeMode.Reverse);
        var (what, why) = Assert.Single(reports);
        Assert.Equal($"jacobian Reverse of {model.Outputs[0].Name} w.r.t. {model.Inputs[0].Name}", what);
        Assert.StartsWith("Slice 'x_reversed' steps backwards", why);
    }

    /// <summary>
    /// A batch whose graph would hold more than the working memory runs in parts that fit, each written into its rows of
    /// the results; it went to the interpreter whole, which served ResNet-18's Vjp of 32 images at half the graph's speed.
    /// </summary>
    [Theory]
    [MemberData(nameof(DerivativeModes))]
    public void ABatchOverTheWorkingMemoryRunsInPartsThatFit(DerivativeMode mode)
    {
        // mlp_tanh's forward graph holds 32 directions of the 1,040 per-sample values its five nodes make, and the 16x32
        // Jacobian: ~135 KB a sample (its reverse graph less): seven samples are over 320 KB.
        var limits = new EngineLimits { WorkingMemoryBytes = 320 << 10, CalibrateAuto = false };
        var bytes = File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh"));
        using var model = ModelVersion.Load("mlp_tanh", 1, bytes, limits);
        using var interpreter = ModelVersion.Load("mlp_tanh", 1, bytes, new EngineLimits { CompileDerivatives = false });
        var rng = new Random(7);
        var inputs = new[] { new HostTensor([7, 32], Enumerable.Range(0, 7 * 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()) };
        using var scope = NewDisposeScope();

        var served = model.Jacobian(inputs, 0, [0], mode);
        var reference = interpreter.Jacobian(inputs, 0, [0], mode);

        var entry = model.CompiledDerivatives.Single();
        Assert.True(served.Compiled, entry.Note);
        // More than one part, and parts of more than one row.
        Assert.InRange(limits.WorkingMemoryBytes / entry.Unit!.BytesPerSample, 2, 6);
        AssertClose($"mlp_tanh {mode} in parts", reference.Outputs, served.Outputs);
        AssertClose($"mlp_tanh {mode} in parts", reference.Jacobians, served.Jacobians);
    }

    /// <summary>
    /// AUTO times each mode's compiled graph on a batch's first call. A graph ONNX Runtime loaded but fails to run (the
    /// ConvNeXt fixture's, while its layer scale was shared, <see cref="SharedWeightsTests"/>) threw out of that timing and
    /// failed the call, where a call that met it outside the timing went to the interpreter. Now the interpreter is timed
    /// instead, and the graph reported for being taken out of service.
    /// </summary>
    [Fact]
    public void AutoTimesTheInterpreterWhereAGraphFailsToRun()
    {
        var limits = new EngineLimits();
        using var graph = OnnxModelReader.Read(File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), ScalarType.Float32, limits.Model);
        using var parts = new ModelParts(graph, limits);
        // A graph that loads and fails at every run: 32 elements per sample reshaped into rows of 7.
        var g = new OnnxBuilder();
        var x = g.X(2, 32);
        var rows = g.Node("Reshape", [x, g.Ints(-1, 7)]);
        g.Output(rows);
        var written = new DerivativeGraphWriter.Written(Onnx.Proto.ModelProto.Parser.ParseFrom(OpForwardOrtTests.OrtModel(g.ToBytes(), OnnxType.Float)), [32], [[7]], 1);
        using var failing = new CompiledDerivative(written, null, [g.Inputs[0].Name], [rows], []);
        var failed = new List<(CompiledDerivative Unit, string Message)>();
        var auto = new AutoMode(parts, new ForwardMode(parts), new ReverseMode(parts), compiled: (_, _, _, _) => failing,
            failed: (unit, e) => failed.Add((unit, e.Message)));
        using var scope = NewDisposeScope();

        var mode = auto.Choose([randn(3, 32)], 0, [0]);

        Assert.Contains(mode, new[] { DerivativeMode.Forward, DerivativeMode.Reverse });
        Assert.NotEmpty(failed);
        Assert.All(failed, f => Assert.Same(failing, f.Unit));
        Assert.Contains("Reshape", failed[0].Message);
        Assert.True(Assert.Single(auto.Choices).Timed);
    }

    /// <summary>
    /// A graph that could not serve even one sample is not written: its size is counted first, the identity seed (basis²
    /// floats) included. A fuzzed upsampler with 12,320 outputs per sample wrote a 600 MB seed into its reverse-mode
    /// graph, and ONNX Runtime took 12 s reading it, before the working memory refused it.
    /// </summary>
    [Fact]
    public void AGraphOverTheWorkingMemoryForOneSampleIsNotWritten()
    {
        var limits = new EngineLimits { WorkingMemoryBytes = 16 << 10, CalibrateAuto = false };
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), limits);
        using var scope = NewDisposeScope();
        Assert.False(model.Jacobian([new HostTensor([1, 32], new float[32])], 0, [0], DerivativeMode.Reverse).Compiled);
        Assert.Matches(@"^the derivative graph would hold [\d,]+ bytes for one sample \([\d,]+ of them its identity seed\), over Engine:WorkingMemoryMiB \(16,384 bytes\)$",
            model.CompiledDerivatives.Single().Note);
    }

    /// <summary>
    /// A graph's memory per sample does not depend on the batch it was first built for: one first asked for at batch 16
    /// was sized from that batch's plan as if it held two samples, 8x over, and never served.
    /// </summary>
    [Fact]
    public void AGraphFirstBuiltForALargerBatchServesIt()
    {
        // ~135 KB a sample (above): 16 fit in 4 MiB, 8x that would not.
        var limits = new EngineLimits { WorkingMemoryBytes = 4 << 20, CalibrateAuto = false };
        using var model = ModelVersion.Load("mlp_tanh", 1, File.ReadAllBytes(Fixtures.ModelPath("mlp_tanh")), limits);
        using var scope = NewDisposeScope();
        Assert.True(model.Jacobian([new HostTensor([16, 32], new float[512])], 0, [0], DerivativeMode.Forward).Compiled);
    }

    public static TheoryData<string, DerivativeMode> RowsAndModes
    {
        get
        {
            var data = new TheoryData<string, DerivativeMode>();
            foreach (var row in RowBothWays.Compilable)
                foreach (var mode in new[] { DerivativeMode.Forward, DerivativeMode.Reverse }) data.Add(row.Name, mode);
            return data;
        }
    }

    /// <summary>
    /// Rows of ops with a compiled rule that still fall back, each with the reason it gives (a rule refuses what it does
    /// not compile; which refusal comes first depends on the direction the graph is written in); a row with its mode in
    /// brackets falls back in that mode only.
    /// </summary>
    private static readonly Dictionary<string, string[]> RowFallbacks = new()
    {
        // ONNX Runtime's recurrent kernels refuse batch-first nodes (Predict falls back to the interpreter too).
        ["LSTM bidirectional, batch first, every output, initial states differentiated (opset 14)"] = ["batch first (layout 1)"],
        ["GRU bidirectional, reset before the product, batch first, initial state differentiated (opset 14)"] = ["batch first (layout 1)"],
        ["AveragePool 1-D count_include_pad 0, asymmetric pads (Reverse)"] = ["pads without count_include_pad"],
        ["AveragePool 2-D count_include_pad 0, asymmetric pads (Reverse)"] = ["pads without count_include_pad"],
        ["AveragePool 2-D count_include_pad 0, symmetric pads (Reverse)"] = ["pads without count_include_pad"],
        ["AveragePool 2-D ceil_mode, count_include_pad 0, asymmetric pads (Reverse)"] = ["pads without count_include_pad"],
        ["AveragePool 2-D auto_pad SAME_UPPER stride 2 (Reverse)"] = ["pads without count_include_pad"],
        // ONNX Runtime refuses the model's own node (its pads are not below the kernel); the interpreter serves it.
        ["MaxPool 1-D dilation 2 asymmetric pads"] = ["pads[dim] < kernel_shape[dim]", "overlapping windows"],
        ["MaxPool 1-D dilation 2, end pad 1 (Reverse)"] = ["overlapping windows; compiled from opset 16 (the model's is 13)"],
        ["MaxPool 1-D stride 2 pads 1 (Reverse)"] = ["overlapping windows"],
        ["MaxPool 2-D asymmetric pads (Reverse)"] = ["overlapping windows"],
        ["MaxPool 2-D ceil_mode, asymmetric pads (Reverse)"] = ["overlapping windows"],
        ["MaxPool 2-D dilations, ceil_mode (Reverse)"] = ["overlapping windows"],
        ["MaxPool 2-D kernel 3 stride 2 symmetric pads (Reverse)"] = ["overlapping windows"],
        ["GatherElements axis -1, fewer rows than the data (Reverse)"] = ["compiled in reverse from opset 16 (the model's is 13)"],
        ["Pad edge on the last axis"] = ["pads in mode 'edge'; compiled for constant padding"],
        ["Pad reflect on the last two axes"] = ["pads in mode 'reflect'"],
        ["Pad reflect on axis 1 of 3 named by axes (opset 18)"] = ["pads in mode 'reflect'"],
        ["Pad wrap on the last two axes (opset 19)"] = ["pads in mode 'wrap'"],
        ["Pad wrap on the last axis of a 2-D input (opset 19)"] = ["pads in mode 'wrap'"],
        ["LogSoftmax axis 0 of 3"] = ["LogSoftmax 'y2' works along axis 0, which is not a per-sample axis"],
        ["Gemm x times x transposed, alpha"] = ["Gemm 'y2' takes its input 1 from wrt; only its data input is compiled"],
        ["MatMul x times x"] = ["MatMul 'y2' takes its input 1 from wrt, whose first axis is not the product's batch axis"],
        ["MatMul 1-D x times 2-D x"] = ["MatMul 'y5' multiplies ranks 1 and 2", "ReduceSum 'y3' works along axis 0, which is not a per-sample axis"],
        ["Slice step -1 reverses axis 1"] = ["Slice 'y6' steps backwards; compiled for steps of 1 or more"],
        ["GatherND one element per row with batch_dims 1 (a repeated tuple, a negative index) (Reverse)"] = ["GatherND 'y3' is compiled in reverse from opset 16 (the model's is 13)"],
        ["GatherND rows by one-axis tuples with batch_dims 1 (Reverse)"] = ["GatherND 'y3' is compiled in reverse from opset 16 (the model's is 13)"],
        ["Slice ends computed from the batch size (opset 15)"] = ["Slice 'y6' takes its input 2 ('y3') from a computed value"],
        ["MatMul 2-D x 1-D, both differentiated"] = ["multiplies ranks 2 and 1"],
        ["MatMul 3-D x 1-D, both differentiated"] = ["multiplies ranks 3 and 1"],
    };

    [Theory]
    [MemberData(nameof(RowsAndModes))]
    public void OpRowJacobiansEqualTheInterpreters(string row, DerivativeMode mode)
    {
        using var models = new RowBothWays(row);
        var (compiled, interpreted, inputs, wrt, of) = (models.Compiled, models.Interpreted, models.Inputs, models.Wrt, models.Of);

        using var scope = NewDisposeScope();
        EngineResult reference;
        try
        {
            reference = interpreted.Jacobian(inputs, wrt, of, mode);
        }
        catch (Exception e) when (e is NodeEvaluationException or System.Runtime.InteropServices.ExternalException)
        {
            // A row whose first axis is not a batch axis (its op moves or mixes it): per-sample Jacobians do not apply.
            output.WriteLine($"{row} {mode}: no per-sample Jacobian ({e.Message.Split('\n')[0]})");
            Assert.Contains(row, NotPerSample);
            return;
        }
        var served = compiled.Jacobian(inputs, wrt, of, mode);
        if (NotFloat32.TryGetValue(row, out var type))
        {
            Assert.Contains(type, compiled.CompiledDerivativesNote);
            Assert.False(served.Compiled);
            return;
        }
        var entry = Assert.Single(compiled.CompiledDerivatives);
        output.WriteLine($"{row} {mode}: {(entry.Compiled ? "compiled" : "interpreter: " + entry.Note)}");
        if (RowFallbacks.TryGetValue(row, out var reasons) || RowFallbacks.TryGetValue($"{row} ({mode})", out reasons))
        {
            Assert.False(served.Compiled);
            Assert.True(reasons.Any(entry.Note.Contains), entry.Note);
        }
        else
        {
            Assert.True(served.Compiled, entry.Note);
        }
        AssertClose($"{row} {mode}", reference.Jacobians, served.Jacobians);
    }

    /// <summary>Rows whose model has a tensor other than float32 in or out, which no derivative graph is compiled for, with the type.</summary>
    internal static readonly Dictionary<string, string> NotFloat32 = new()
    {
        ["Cast to int64 (no tangent)"] = "is int64",
        ["CastLike to int64 like a shape (no tangent, opset 15)"] = "is int64",
        ["TopK 2 largest along the last axis"] = "is int64",
        ["Dropout with mask output"] = "is bool",
    };

    /// <summary>Rows of ops with a compiled rule whose first axis is no batch axis, so the interpreter refuses per-sample Jacobians.</summary>
    internal static readonly HashSet<string> NotPerSample =
    [
        "Add [3,1] broadcast into [2,3,4]",
        "ReduceProd every axis, keepdims 0",
        "GatherND batch_dims 0, tuples into the first two axes",
        "Concat axis 0, both differentiated",
        "Div denominator [3,1] broadcast",
        "Div numerator [3] broadcast",
        "Expand [3,1] to [2,3,4]",
        "Flatten axis -1",
        "Flatten axis 0",
        "Gather axis 0, scalar index",
        "Gemm A and B differentiated, transA",
        "Gemm B differentiated with transB, bias [1,5]",
        "Gemm transA transB alpha beta bias",
        "MatMul 1-D x 2-D, both differentiated",
        "MatMul 1-D x 3-D, both differentiated",
        "Mul [3,1] broadcast into [2,3,4]",
        "Pad constant mode, value 0.5",
        "Pad edge on a 1-D input",
        "Pad reflect on both axes of a 2-D input",
        "Pow base [3,1] broadcast",
        "Pow exponent [4] broadcast",
        "ReduceMean axes attribute [0, 2]",
        "ReduceMean axes input [-1, 0], keepdims 0 (opset 18)",
        "ReduceMean no axes input: all to a scalar (opset 18)",
        "ReduceSum all axes to a scalar",
        "ReduceSum axes input [-1, 0], keepdims 1",
        "Reshape to [4, -1, 2]",
        "Slice starts and ends only",
        "Slice step -2 on axis 0",
        "Slice steps 2 and 3, ends past the axes",
        "Split into 3 by a split input",
        "Squeeze every unit axis",
        "Sub [4] broadcast from [2,3,4]",
        "Sub broadcast, both differentiated",
        "Tile repeats [2, 1], the first axis too",
        "Transpose default perm (reversed)",
        "Transpose perm [2, 0, 1]",
        "Unsqueeze axes [0, -1]",
    ];

    [Fact]
    public void ListedRowsExist() =>
        Assert.All(RowFallbacks.Keys.Select(r => r.Replace(" (Forward)", "").Replace(" (Reverse)", "")).Concat(NotPerSample).Concat(NotFloat32.Keys),
            r => Assert.Contains(r, OpRows.ByName.Keys));

    // Both sides compute in float32 from the same inputs and weights, in their own order and with their own vectorised
    // transcendental functions: a few roundings per product term over sums of up to a few hundred terms.
    internal static void AssertClose(string what, IReadOnlyDictionary<string, HostTensor> expected, IReadOnlyDictionary<string, HostTensor> actual,
        float tolerance = 1e-5f)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.Equal(e.Shape, a.Shape);
            float scale = Math.Max(1e-3f, e.Data.Take((int)e.Count).Max(MathF.Abs));
            for (int i = 0; i < e.Count; i++)
                Assert.True(MathF.Abs(e.Data[i] - a.Data[i]) <= tolerance * scale || (float.IsNaN(e.Data[i]) && float.IsNaN(a.Data[i])),
                    $"{what}, {name}[{i}]: interpreter {e.Data[i]}, compiled {a.Data[i]} (scale {scale})");
        }
    }
}
