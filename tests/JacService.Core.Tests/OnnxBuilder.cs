using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Tests;

/// <summary>How a test tensor's random values are drawn (fixed seed), e.g. kept away from an op's kinks.</summary>
public delegate double[] Dist(Random rng, int count);

public static class Dists
{
    public static readonly Dist Normal = (rng, n) => Draw(rng, n, 1);

    /// <summary>Uniform in [0.5, 2]: for Sqrt, Log, a Pow base, a variance.</summary>
    public static readonly Dist Positive = (rng, n) => Enumerable.Range(0, n).Select(_ => 0.5 + 1.5 * rng.NextDouble()).ToArray();

    /// <summary>Distinct values at least 0.1 apart (a shuffled grid plus jitter): no ties for MaxPool.</summary>
    public static readonly Dist Distinct = (rng, n) =>
        Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Select(i => (i - n / 2) * 0.2 + 0.05 * rng.NextDouble()).ToArray();

    /// <summary>Uniform in [-<paramref name="bound"/>, <paramref name="bound"/>]: for Asin, Acos, Atanh (inside ±1) and Tan (inside ±π/2).</summary>
    /// <summary>Standard normal draws with exact zeros at the given flat positions.</summary>
    public static Dist ZeroAt(params int[] positions) => (rng, n) =>
    {
        var values = Draw(rng, n, 1);
        foreach (var p in positions) values[p] = 0;
        return values;
    };

    public static Dist Within(double bound) => (rng, n) => Enumerable.Range(0, n).Select(_ => bound * (2 * rng.NextDouble() - 1)).ToArray();

    /// <summary>Uniform in [<paramref name="low"/>, <paramref name="low"/> + 1.5]: for Acosh, defined above 1.</summary>
    public static Dist Above(double low) => (rng, n) => Enumerable.Range(0, n).Select(_ => low + 1.5 * rng.NextDouble()).ToArray();

    /// <summary>Normal values times <paramref name="scale"/>, none closer than 0.05 to any of <paramref name="kinks"/>.</summary>
    public static Dist Away(double scale, params double[] kinks) => (rng, n) => Draw(rng, n, scale).Select(v =>
    {
        foreach (var k in kinks)
            if (Math.Abs(v - k) < 0.05) v = k + (v >= k ? 0.05 : -0.05) + 0.01 * rng.NextDouble();
        return v;
    }).ToArray();

    private static double[] Draw(Random rng, int n, double scale) => Enumerable.Range(0, n).Select(_ =>
    {
        // Box-Muller.
        double u = 1 - rng.NextDouble(), v = rng.NextDouble();
        return scale * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v);
    }).ToArray();
}

/// <summary>A graph input of a test model and the values it is fed.</summary>
public sealed record TestInput(string Name, long[] Shape, double[] Data, bool Differentiated);

/// <summary>ONNX element type codes.</summary>
public static class OnnxType
{
    public const int Float = 1, Int64 = 7, Bool = 9, Double = 11;

    /// <summary>Not an ONNX code: a sequence of float tensors, for a control-flow body's inputs and outputs.</summary>
    public const int FloatSequence = -1;

    public static TypeProto Type(int type) => type == FloatSequence
        ? new TypeProto { SequenceType = new TypeProto.Types.Sequence { ElemType = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float } } } }
        : new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = type } };
}

/// <summary>
/// Builds small ONNX models for the rule tests: float graph inputs (differentiated by default), random or given
/// initializers, nodes with attributes. Graph inputs declare symbolic dims so the loader does not pre-plan a
/// batch of one (which would not evaluate for e.g. a Gemm weight fed as a graph input).
/// </summary>
public sealed class OnnxBuilder(int opset = 13, int seed = 1234, string prefix = "")
{
    private const int Float = OnnxType.Float, Int64 = OnnxType.Int64, Double = OnnxType.Double;

    private readonly GraphProto _graph = new() { Name = "rule_test" };
    private readonly Random _rng = new(seed);
    private readonly List<TestInput> _inputs = [];
    private readonly List<(string Name, int Type, long[]? Shape)> _outputs = [];
    private string[] _lastOutputs = [];
    private int _count;

    public int Opset { get; set; } = opset;
    public IReadOnlyList<TestInput> Inputs => _inputs;

    /// <summary>Element type per graph output.</summary>
    public IReadOnlyList<int> OutputTypes => Outputs.Select(o => o.Type).ToList();

    private IReadOnlyList<(string Name, int Type, long[]? Shape)> Outputs =>
        _outputs.Count > 0 ? _outputs : _lastOutputs.Select(o => (o, Float, (long[]?)null)).ToList();

    private string Fresh(string kind) => $"{prefix}{kind}{_count++}";

    /// <summary>A differentiated float graph input with normal values.</summary>
    public string X(params long[] shape) => X(Dists.Normal, shape);

    public string X(Dist dist, params long[] shape) => Input(dist, shape, differentiated: true);

    /// <summary>Fixes axis <paramref name="axis"/> of graph input <paramref name="name"/> to the size it is fed (a declared length).</summary>
    public void Declare(string name, int axis)
    {
        var input = _graph.Input.Single(v => v.Name == name);
        input.Type.TensorType.Shape.Dim[axis] = new TensorShapeProto.Types.Dimension { DimValue = _inputs.Single(i => i.Name == name).Shape[axis] };
    }

    /// <summary>
    /// A control-flow body (If's branches, Loop's and Scan's body): inputs of the given ONNX element types, nodes and
    /// initializers added by <paramref name="build"/> on a builder whose names cannot collide with this one's, and the
    /// outputs it returns. Its nodes may read this graph's values by name, as ONNX lets a body read its outer scopes.
    /// </summary>
    public GraphProto Body(int[] inputTypes, Func<OnnxBuilder, string[], string[]> build, int[]? outputTypes = null)
    {
        var inner = new OnnxBuilder(Opset, _rng.Next(), $"{prefix}b{_count++}_");
        var inputs = inputTypes.Select(type =>
        {
            var name = inner.Fresh("in");
            // ONNX Runtime wants Loop's iteration number and condition declared scalars; values of the float type keep any shape.
            var declared = OnnxType.Type(type);
            if (type is not (Float or OnnxType.FloatSequence)) declared.TensorType.Shape = new TensorShapeProto();
            inner._graph.Input.Add(new ValueInfoProto { Name = name, Type = declared });
            return name;
        }).ToArray();
        var outputs = build(inner, inputs);
        for (int o = 0; o < outputs.Length; o++)
            inner._graph.Output.Add(new ValueInfoProto { Name = outputs[o], Type = OnnxType.Type(outputTypes?[o] ?? Float) });
        return inner._graph;
    }

    public string Input(Dist dist, long[] shape, bool differentiated)
    {
        var name = Fresh("x");
        var tensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = new TensorShapeProto() };
        for (int i = 0; i < shape.Length; i++) tensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = $"{name}_d{i}" });
        _graph.Input.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } });
        _inputs.Add(new TestInput(name, shape, dist(_rng, (int)Product(shape)), differentiated));
        return name;
    }

    /// <summary>A random float64 initializer (a constant operand: weights, bias, slope ...).</summary>
    public string W(params long[] shape) => W(Dists.Normal, shape);

    public string W(Dist dist, params long[] shape) => Const(dist(_rng, (int)Product(shape)), shape);

    /// <summary>A float64 initializer with the given values (a scalar when no shape is given).</summary>
    public string Const(double[] values, params long[] shape)
    {
        var t = Tensor(Double, shape);
        t.DoubleData.Add(values);
        return Initializer(t);
    }

    public string Scalar(double value) => Const([value]);

    /// <summary>A 1-D int64 initializer (axes, shape, pads, starts ...).</summary>
    public string Ints(params long[] values) => IntsShaped([values.Length], values);

    public string IntsShaped(long[] shape, params long[] values)
    {
        var t = Tensor(Int64, shape);
        t.Int64Data.Add(values);
        return Initializer(t);
    }

    /// <summary>A bool scalar initializer (a condition).</summary>
    public string Bool(bool value)
    {
        var t = Tensor(OnnxType.Bool, []);
        t.Int32Data.Add(value ? 1 : 0);
        return Initializer(t);
    }

    /// <summary>A float64 tensor value (for attributes such as Constant's and ConstantOfShape's value).</summary>
    public static TensorProto Doubles(long[] shape, params double[] values)
    {
        var t = Tensor(Double, shape);
        t.DoubleData.Add(values);
        return t;
    }

    private static TensorProto Tensor(int type, long[] shape)
    {
        var t = new TensorProto { DataType = type };
        t.Dims.Add(shape);
        return t;
    }

    private string Initializer(TensorProto t)
    {
        t.Name = Fresh("w");
        _graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>Adds a node with one output and returns that output's name.</summary>
    public string Node(string op, string[] inputs, params (string Name, object Value)[] attributes) =>
        Node(op, 1, inputs, attributes)[0];

    public string[] Node(string op, int outputs, string[] inputs, params (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = Fresh(op + "_") };
        node.Input.Add(inputs);
        _lastOutputs = Enumerable.Range(0, outputs).Select(_ => Fresh("y")).ToArray();
        node.Output.Add(_lastOutputs);
        node.Attribute.Add(attributes.Select(a => Attribute(a.Name, a.Value)));
        _graph.Node.Add(node);
        return _lastOutputs;
    }

    /// <summary>Declares a graph output; without any, the last node's outputs are the (float) graph outputs.</summary>
    public void Output(string name, int type = Float) => _outputs.Add((name, type, null));

    /// <summary>
    /// Declares a graph output with its shape: for an op whose output ONNX Runtime does not infer (GroupNormalization's
    /// function body), which would otherwise hold the scalar an undeclared output reads as against the graph.
    /// </summary>
    public void Output(string name, long[] shape) => _outputs.Add((name, Float, shape));

    private static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int or long: a.Type = AttributeProto.Types.AttributeType.Int; a.I = Convert.ToInt64(value); break;
            case float or double: a.Type = AttributeProto.Types.AttributeType.Float; a.F = Convert.ToSingle(value); break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case int[] ints: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.Add(ints.Select(i => (long)i)); break;
            case long[] longs: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.Add(longs); break;
            case float[] floats: a.Type = AttributeProto.Types.AttributeType.Floats; a.Floats.Add(floats); break;
            case string[] strings: a.Type = AttributeProto.Types.AttributeType.Strings; a.Strings.Add(strings.Select(ByteString.CopyFromUtf8)); break;
            case TensorProto t: a.Type = AttributeProto.Types.AttributeType.Tensor; a.T = t; break;
            case GraphProto g: a.Type = AttributeProto.Types.AttributeType.Graph; a.G = g; break;
            default: throw new ArgumentException($"attribute {name}: unsupported value {value}");
        }
        return a;
    }

    public byte[] ToBytes()
    {
        var graph = _graph.Clone();
        foreach (var (name, type, shape) in Outputs)
        {
            var declared = new TensorShapeProto();
            declared.Dim.AddRange((shape ?? []).Select(d => new TensorShapeProto.Types.Dimension { DimValue = d }));
            graph.Output.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = type, Shape = declared } },
            });
        }
        var model = new ModelProto { IrVersion = 8, ProducerName = "OpRuleTests", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return model.ToByteArray();
    }

    private static long Product(long[] shape) => shape.Aggregate(1L, (p, d) => p * d);
}
