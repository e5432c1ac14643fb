using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Compiled;

/// <summary>
/// Appends nodes and initializers to an ONNX graph under fresh names, and answers the static shape of a value (for a
/// batch of two, so a batch axis tells itself from a per-sample one). Derivative nodes are plain ONNX ops at the
/// model's opset (13 or later: axes as inputs), so ONNX Runtime runs them beside the model's own.
/// </summary>
internal sealed class OnnxEmitter(GraphProto graph, long opset, Func<string, long[]?> shapeOf, Func<string, long[]?> foldedInts)
{
    public long Opset => opset;

    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);
    private int _next;

    public string Op(string op, params string[] inputs) => Op(op, inputs, []);

    public string Op(string op, string[] inputs, params AttributeProto[] attributes) => Ops(op, 1, inputs, attributes)[0];

    /// <summary>A node with several outputs (MaxPool's values and indices), their names in order.</summary>
    public string[] Ops(string op, int outputs, string[] inputs, params AttributeProto[] attributes)
    {
        string name = $"jac/{op}_{_next++}";
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(Enumerable.Range(0, outputs).Select(o => o == 0 ? name : $"{name}:{o}"));
        node.Attribute.AddRange(attributes);
        graph.Node.Add(node);
        return [.. node.Output];
    }

    public void Append(NodeProto node) => graph.Node.Add(node);

    /// <summary>ONNX Runtime's own operator domain, which the graphs' runtime has and plain ONNX lacks.</summary>
    public const string RuntimeDomain = "com.microsoft";

    /// <summary>Whether a node of <see cref="RuntimeDomain"/> was emitted: the model must then import that domain.</summary>
    public bool UsesRuntimeOps { get; private set; }

    /// <summary>A node of ONNX Runtime's own domain.</summary>
    public string RuntimeOp(string op, string[] inputs, params AttributeProto[] attributes)
    {
        string name = Op(op, inputs, attributes);
        graph.Node[^1].Domain = RuntimeDomain;
        UsesRuntimeOps = true;
        return name;
    }

    /// <summary>A float32 initializer of the given shape.</summary>
    public string Floats(float[] values, params long[] dims)
    {
        var tensor = new TensorProto { Name = $"jac/const_{_next++}", DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        tensor.RawData = ByteString.CopyFrom(bytes);
        graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>A float32 scalar, one initializer per value.</summary>
    public string Scalar(float value) => Cached($"f:{value:R}", () => Floats([value]));

    /// <summary>A 1-D int64 initializer (axes, shapes, slice bounds), one per content.</summary>
    public string Ints(params long[] values) => Cached("i:" + string.Join(",", values), () =>
    {
        var tensor = new TensorProto { Name = $"jac/ints_{_next++}", DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.Add(values.Length);
        tensor.Int64Data.AddRange(values);
        graph.Initializer.Add(tensor);
        return tensor.Name;
    });

    /// <summary>A 0-D int64 initializer, one per value: a Gather at it drops the axis.</summary>
    public string Index(long value) => Cached($"s:{value}", () =>
    {
        var tensor = new TensorProto { Name = $"jac/index_{_next++}", DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Int64Data.Add(value);
        graph.Initializer.Add(tensor);
        return tensor.Name;
    });

    /// <summary>Element <paramref name="index"/> of <paramref name="value"/> along <paramref name="axis"/>, the axis dropped.</summary>
    public string Select(string value, long axis, long index) => Op("Gather", [value, Index(index)], Int("axis", axis));

    /// <summary>The values stacked along a new axis <paramref name="axis"/>.</summary>
    public string Stack(IEnumerable<string> values, long axis) =>
        Op("Concat", [.. values.Select(v => Op("Unsqueeze", v, Ints(axis)))], Int("axis", axis));

    public long[] Shape(string value) =>
        shapeOf(value) ?? throw new NotCompilableException($"the shape of '{value}' is not known ahead of a request");

    public int Rank(string value) => Shape(value).Length;

    /// <summary>
    /// The values of an int64 tensor the file fixes (an initializer or a Constant node's value) or computes from shapes
    /// alone, the same for every batch, such as a Slice's bounds or a reduction's axes; null where it depends on the
    /// data or the batch, or is not int64.
    /// </summary>
    public long[]? ConstantInts(string value) => Constant(value, TensorProto.Types.DataType.Int64, t => t.Int64Data) ?? foldedInts(value);

    /// <summary>The values of a float32 tensor the file fixes (a Resize's scales); null where it is computed or not float32.</summary>
    public float[]? ConstantFloats(string value) => Constant(value, TensorProto.Types.DataType.Float, t => t.FloatData);

    private T[]? Constant<T>(string value, TensorProto.Types.DataType type, Func<TensorProto, IEnumerable<T>> typed) where T : unmanaged
    {
        var tensor = ConstantOf(value);
        if (tensor is null || tensor.DataType != (int)type) return null;
        return tensor.RawData.IsEmpty ? typed(tensor).ToArray() : MemoryMarshal.Cast<byte, T>(tensor.RawData.Span).ToArray();
    }

    private TensorProto? ConstantOf(string value) =>
        graph.Initializer.FirstOrDefault(t => t.Name == value)
        ?? graph.Node.FirstOrDefault(n => n.OpType == "Constant" && n.Output.Contains(value))?.Attribute.FirstOrDefault(a => a.Name == "value")?.T;

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto String(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto IntList(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public string Mul(string a, string b) => Op("Mul", a, b);
    public string Add(string a, string b) => Op("Add", a, b);
    public string Sub(string a, string b) => Op("Sub", a, b);

    /// <summary>The runtime shape [basis, ..value's shape] of a direction of <paramref name="value"/>.</summary>
    public string WithBasis(long basis, string value) => Op("Concat", [Ints(basis), Op("Shape", value)], Int("axis", 0));

    /// <summary>A direction made full-size: [basis, ..value's shape], whatever axes it broadcast along.</summary>
    public string Full(string direction, long basis, string value) => Op("Expand", direction, WithBasis(basis, value));

    private string Cached(string key, Func<string> make)
    {
        if (!_constants.TryGetValue(key, out var name)) _constants[key] = name = make();
        return name;
    }
}
