using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using JacService.Core.Ops;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace JacService.Core.Tests;

/// <summary>
/// Every op row's forward pass against ONNX Runtime, an implementation independent of ours: OpRuleTests checks
/// the JVP rules against our own forward, so a forward mistake shared by both (a default attribute, a padding
/// convention) is only caught here. Each row's model runs in float64 unless ORT's CPU provider lacks a double
/// kernel for it; then both ORT and the engine run it in float32.
/// </summary>
public class OpForwardOrtTests(ITestOutputHelper output)
{
    private const string NoDoubleKernel = "ORT's CPU provider registers no double kernel for it (NotImplemented)";

    /// <summary>Ops whose rows run in float32, each with the reason they cannot run in float64 on ORT.</summary>
    private static readonly Dictionary<string, string> Float32Ops = new()
    {
        ["LeakyRelu"] = NoDoubleKernel,
        ["Elu"] = NoDoubleKernel,
        ["Selu"] = NoDoubleKernel,
        ["HardSigmoid"] = NoDoubleKernel,
        ["Softplus"] = NoDoubleKernel,
        ["Softsign"] = NoDoubleKernel,
        ["Erf"] = NoDoubleKernel,
        ["OneHot"] = NoDoubleKernel,
        ["Tan"] = NoDoubleKernel,
        ["Atan"] = NoDoubleKernel,
        ["Asin"] = NoDoubleKernel,
        ["Acos"] = NoDoubleKernel,
        ["Sinh"] = NoDoubleKernel,
        ["Cosh"] = NoDoubleKernel,
        ["Asinh"] = NoDoubleKernel,
        ["Acosh"] = NoDoubleKernel,
        ["Atanh"] = NoDoubleKernel,
        ["ThresholdedRelu"] = NoDoubleKernel,
        ["Celu"] = "ONNX defines Celu for float32 only",
        ["HardSwish"] = "ORT runs HardSwish's function body, whose HardSigmoid has no double kernel",
        ["Shrink"] = "ORT 1.31's Shrink hands a double input back rounded to float32 (9.4e-8 off where it passes x through)",
        ["GridSample"] = "ORT has no double GridSample-16 kernel (its GridSample-20 has one)",
        ["PRelu"] = NoDoubleKernel,
        ["Conv"] = NoDoubleKernel,
        ["ConvTranspose"] = NoDoubleKernel,
        ["AveragePool"] = NoDoubleKernel,
        ["GlobalAveragePool"] = NoDoubleKernel,
        ["GlobalMaxPool"] = NoDoubleKernel,
        ["Mean"] = NoDoubleKernel,
        ["InstanceNormalization"] = NoDoubleKernel,
        ["Attention"] = "ORT runs Attention's function body in double",
        ["RotaryEmbedding"] = "ONNX defines RotaryEmbedding for float32, float16 and bfloat16 only",
        ["LSTM"] = "ORT's LSTM kernel refuses double at run time (\"does not support double yet\")",
        ["GRU"] = "ORT's GRU kernel refuses double at run time (\"does not support double yet\")",
        ["RNN"] = NoDoubleKernel,
        ["Resize"] = "ONNX takes a Resize's scales in float32 only, and ORT has no double Resize kernel",
        // ORT has no Gelu kernel and runs Gelu-20's function body: with approximate none that needs Erf (no double
        // kernel); with tanh it runs, but the body's constants (2/pi, 0.044715) are float32 literals CastLike'd to
        // the input, so in double it is ~6e-9 off the spec's formula, sqrt(2/pi) * (x + 0.044715 x^3).
        ["Gelu"] = "ORT expands it into its function body: Erf has no double kernel, the tanh form's constants are float32",
    };

    /// <summary>Single rows that run in float32 although their op has double kernels.</summary>
    private static readonly Dictionary<string, string> Float32Rows = new()
    {
        ["Constant value_float, plus x"] = "value_float makes a float32 tensor by definition, which a double Add rejects",
        ["GroupNormalization 3 groups of 2 channels, 1-D, scale per channel (opset 21)"] =
            "its default stash_type computes the statistics in float32 by definition (ORT runs the op's function body)",
        // Lengths 6 and 8 agree to 1e-15 in double; 7, a prime, is where ORT's radix 2, 3, 5 factorisation does not reach.
        ["DFT complex signal along axis 2, inverse, padded to dft_length 7"] =
            "ORT 1.31's double DFT of length 7 is 3.6e-8 off the exact transform, a float32 accuracy",
        ["DFT a half spectrum of 3 bins to the odd length 5"] = "ORT 1.31's double DFT of length 5 is 1.9e-8 off the exact transform",
    };

    /// <summary>Rows ORT cannot run at all, with the reason. Every op must still have a row that ORT checks.</summary>
    private static readonly Dictionary<string, string> OrtCannotRun = new()
    {
        ["LSTM bidirectional, batch first, every output, initial states differentiated (opset 14)"] = BatchFirst,
        ["GRU bidirectional, reset before the product, batch first, initial state differentiated (opset 14)"] = BatchFirst,
        // The ONNX spec sets no such bound; the row's window spans 3 with dilation 2, and the row beside it pads 1.
        ["Attention 4-D, past key and value, causal, a bool mask over the past keys only"] =
            "ORT requires attn_mask to span past and new keys (attention_helper.h: inconsistent total_sequence_length), where the definition pads it; the row's expected values check it",
        ["MaxPool 1-D dilation 2 asymmetric pads"] =
            "ORT's pool kernels require each pad to be smaller than the kernel (pool_attributes.h: pads[dim] < kernel_shape[dim]); this row pads 2 with a kernel of 2",
    };

    private const string BatchFirst =
        "ORT's recurrent kernels refuse layout 1 (\"Batchwise recurrent operations (layout == 1) are not supported\"); the spec defines it from opset 14";

    // Float64: both sides evaluate a handful of operations per element (reductions over at most a few dozen terms)
    // in double, so they differ only by rounding order, ~1e-15 relative; 1e-12 leaves three orders of margin.
    private const double Float64Tolerance = 1e-12;

    // Float32: both sides start from the same float32 inputs and weights (rounded once from the row's doubles), then
    // each rounds (unit roundoff 6e-8) in its own order and uses its own vectorised exp/tanh/erf approximations
    // (a few ulp); sums of up to ~40 terms add up to ~40 roundings. The worst seen is 1.2e-7 of the output's scale
    // (a 2-D Conv); 2e-6 leaves a 16x margin, yet still catches a constant rounded to five digits (~1e-5 relative).
    private const double Float32Tolerance = 2e-6;

    public static TheoryData<string> OrtRowNames => new(OpRows.Rows.Select(r => r.Name).Where(n => !OrtCannotRun.ContainsKey(n)));

    /// <summary>The rows of ops listed for lacking double kernels.</summary>
    public static TheoryData<string> NoDoubleKernelRowNames =>
        new(OpRows.Rows.Where(r => Float32Ops.GetValueOrDefault(r.OpType) == NoDoubleKernel).Select(r => r.Name));

    private static bool RunsInFloat32(string row) => Float32Rows.ContainsKey(row) || Float32Ops.ContainsKey(OpRows.ByName[row].OpType);

    [Fact]
    public void EveryOpHasARowThatOrtChecks()
    {
        var checkedOps = OpRows.Rows.Where(r => !OrtCannotRun.ContainsKey(r.Name)).Select(r => r.OpType);
        var missing = OpTable.Rules.Keys.Concat(OnnxModelReader.ExpandedOps).Except(checkedOps).Order().ToList();
        Assert.True(missing.Count == 0, $"ops without a row that ONNX Runtime checks: {string.Join(", ", missing)}");
    }

    [Fact]
    public void ListedRowsExist()
    {
        var stale = Float32Rows.Keys.Concat(OrtCannotRun.Keys).Where(n => !OpRows.ByName.ContainsKey(n)).ToList();
        Assert.True(stale.Count == 0, $"listed rows that OpRows does not have: {string.Join(", ", stale)}");
        var unknown = Float32Ops.Keys.Except(OpTable.Rules.Keys.Concat(OnnxModelReader.ExpandedOps)).ToList();
        Assert.True(unknown.Count == 0, $"listed ops that OpTable does not have: {string.Join(", ", unknown)}");
        Assert.Empty(Float32Rows.Keys.Intersect(OrtCannotRun.Keys));
    }

    [Theory]
    [MemberData(nameof(OrtRowNames))]
    public void ForwardMatchesOnnxRuntime(string row)
    {
        bool float32 = RunsInFloat32(row);
        var g = new OnnxBuilder();
        OpRows.ByName[row].Build(g);
        var bytes = g.ToBytes();
        var computeType = float32 ? ScalarType.Float32 : ScalarType.Float64;

        // The engine loads the row's own model: it computes every float type in its compute type, so the double
        // weights it holds are rounded exactly as the float32 copy ORT gets.
        using var model = ModelVersion.Load(row, 1, bytes, new EngineLimits(), computeType);
        using var scope = NewDisposeScope();
        var actual = model.Forward(g.Inputs.Select(i => tensor(i.Data, i.Shape, ScalarType.Float64).to_type(computeType)).ToArray());

        var expected = RunOrt(OrtModel(bytes, float32 ? OnnxType.Float : OnnxType.Double), g.Inputs, float32);
        Assert.Equal(expected.Count, actual.Length);
        double tolerance = float32 ? Float32Tolerance : Float64Tolerance;
        for (int o = 0; o < actual.Length; o++)
        {
            var (shape, type, values) = expected[o];
            Assert.True(shape.SequenceEqual(actual[o].shape), $"output {o}: shape [{string.Join(", ", actual[o].shape)}], ORT [{string.Join(", ", shape)}]");
            Assert.Equal(type, actual[o].dtype);
            var ours = actual[o].to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
            if (type is not (ScalarType.Float32 or ScalarType.Float64))
            {
                Assert.True(values.SequenceEqual(ours), $"output {o} ({type}): [{string.Join(", ", ours)}], ORT [{string.Join(", ", values)}]");
                continue;
            }
            double scale = Math.Max(1, values.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max());
            // NaN on one side only (or infinities that differ) counts as an infinite error.
            double error = values.Zip(ours, (e, a) => e.Equals(a) ? 0 : double.IsNaN(e - a) ? double.PositiveInfinity : Math.Abs(e - a))
                .DefaultIfEmpty(0).Max();
            output.WriteLine($"{row}: output {o} {type} max abs error {error:E2} (scale {scale:G4})");
            Assert.True(error <= tolerance * scale,
                $"output {o}: max abs error {error:E2} > {tolerance:E0} x {scale:G4}\n ours [{string.Join(", ", ours)}]\n  ORT [{string.Join(", ", values)}]");
        }
    }

    /// <summary>Keeps the float32 list honest: a row listed for a missing double kernel must really miss one.</summary>
    [Theory]
    [MemberData(nameof(NoDoubleKernelRowNames))]
    public void Float32OpsHaveNoDoubleKernel(string row)
    {
        var g = new OnnxBuilder();
        OpRows.ByName[row].Build(g);
        var bytes = OrtModel(g.ToBytes(), OnnxType.Double);
        var e = Assert.ThrowsAny<OnnxRuntimeException>(() => RunOrt(bytes, g.Inputs, float32: false));
        Assert.Contains("NotImplemented", e.Message);
    }

    /// <summary>
    /// The row's model as ORT needs it: OnnxBuilder declares float graph inputs and outputs but double weights (the
    /// engine computes both alike), while ORT requires one type throughout, so every float type becomes
    /// <paramref name="floatType"/> — including Cast's target, which in the engine is the compute type too.
    /// </summary>
    internal static byte[] OrtModel(byte[] bytes, int floatType)
    {
        var model = ModelProto.Parser.ParseFrom(bytes);
        Retype(model.Graph, floatType);
        return model.ToByteArray();
    }

    /// <summary>A graph and its control-flow bodies, retyped.</summary>
    private static void Retype(GraphProto graph, int floatType)
    {
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo))
            if ((v.Type.TensorType ?? v.Type.SequenceType?.ElemType.TensorType) is { } t && IsFloat(t.ElemType)) t.ElemType = floatType;
        foreach (var t in graph.Initializer) Retype(t, floatType);
        foreach (var a in graph.Node.SelectMany(n => n.Attribute.Select(a => (n.OpType, Attribute: a))))
        {
            if (a.Attribute.T is { } t) Retype(t, floatType);
            if (a.Attribute.G is { } body) Retype(body, floatType);
            if ((a.OpType, a.Attribute.Name) is ("Cast", "to") or ("SequenceEmpty", "dtype") && IsFloat((int)a.Attribute.I)) a.Attribute.I = floatType;
        }
    }

    private static bool IsFloat(int type) => type is OnnxType.Float or OnnxType.Double;

    private static void Retype(TensorProto t, int floatType)
    {
        if (!IsFloat(t.DataType)) return;
        if (!t.RawData.IsEmpty) throw new NotSupportedException($"tensor {t.Name}: raw data is not retyped");
        var values = t.DataType == OnnxType.Double ? t.DoubleData.ToArray() : t.FloatData.Select(f => (double)f).ToArray();
        t.DoubleData.Clear();
        t.FloatData.Clear();
        if (floatType == OnnxType.Double) t.DoubleData.Add(values);
        else t.FloatData.Add(values.Select(v => (float)v));
        t.DataType = floatType;
    }

    /// <summary>Runs the model on ORT's CPU provider without graph rewrites, so the op's own kernel computes.</summary>
    private static List<(long[] Shape, ScalarType Type, double[] Values)> RunOrt(byte[] bytes, IReadOnlyList<TestInput> inputs, bool float32)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(bytes, options);
        var values = inputs.Select(i => float32
            ? OrtValue.CreateTensorValueFromMemory(i.Data.Select(d => (float)d).ToArray(), i.Shape)
            : OrtValue.CreateTensorValueFromMemory(i.Data.ToArray(), i.Shape)).ToList();
        try
        {
            using var run = new RunOptions();
            using var results = session.Run(run, inputs.Select(i => i.Name).ToList(), values, session.OutputNames);
            return results.Select(Read).ToList();
        }
        finally
        {
            values.ForEach(v => v.Dispose());
        }
    }

    private static (long[] Shape, ScalarType Type, double[] Values) Read(OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        return info.ElementDataType switch
        {
            TensorElementType.Float => (info.Shape, ScalarType.Float32, value.GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray()),
            TensorElementType.Double => (info.Shape, ScalarType.Float64, value.GetTensorDataAsSpan<double>().ToArray()),
            TensorElementType.Int64 => (info.Shape, ScalarType.Int64, value.GetTensorDataAsSpan<long>().ToArray().Select(v => (double)v).ToArray()),
            TensorElementType.Bool => (info.Shape, ScalarType.Bool, value.GetTensorDataAsSpan<bool>().ToArray().Select(b => b ? 1.0 : 0.0).ToArray()),
            var t => throw new NotSupportedException($"ORT output of element type {t}"),
        };
    }
}
