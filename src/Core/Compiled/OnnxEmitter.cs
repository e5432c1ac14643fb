using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Compiled;

/// <summary>
/// Appends nodes and initializers to an ONNX graph under fresh names, and answers the static shape of a value (for a
/// batch of two, so a batch axis tells itself from a per-sample one). Derivative nodes are plain ONNX ops at the
/// model's opset (13 or later: axes as inputs), so ONNX Runtime runs them beside the model's own.
/// </summary>
internal sealed class OnnxEmitter
{
    /// <summary>What a graph and the bodies written into it share: the constants (initializers of the main graph, which a body reads from the outer scope) and a counter for fresh names.</summary>
    private sealed class Shared(string prefix, bool readBack)
    {
        public readonly Dictionary<string, string> Constants = new(StringComparer.Ordinal);
        public readonly string Prefix = prefix;
        public readonly bool ReadBack = readBack;
        public int Next;
        public bool UsesRuntimeOps;
    }

    /// <summary>The namespace of the values a derivative graph adds to its model's.</summary>
    public const string DefaultPrefix = "jac/";

    private readonly GraphProto _graph;
    private readonly GraphProto _main;
    private readonly Shared _shared;
    private readonly Func<string, long[]?> _shapeOf;
    private readonly Func<string, long[]?> _foldedInts;
    private readonly Func<string, long[]?> _batchAxes;

    /// <param name="prefix">The namespace of the names it makes: a graph differentiated again needs a second one.</param>
    /// <param name="readBack">A graph that the engine reads back and differentiates again (<see cref="ReadBack"/>).</param>
    /// <param name="batchAxes">A value's axes whose length follows the batch, by name, or null where not known.</param>
    public OnnxEmitter(GraphProto graph, long opset, Func<string, long[]?> shapeOf, Func<string, long[]?> foldedInts, Func<string, long[]?> batchAxes,
        string prefix = DefaultPrefix, bool readBack = false)
        : this(graph, graph, new Shared(prefix, readBack), opset, shapeOf, foldedInts, batchAxes)
    {
    }

    private OnnxEmitter(GraphProto graph, GraphProto main, Shared shared, long opset, Func<string, long[]?> shapeOf, Func<string, long[]?> foldedInts,
        Func<string, long[]?> batchAxes)
    {
        (_graph, _main, _shared, Opset, _shapeOf, _foldedInts, _batchAxes) = (graph, main, shared, opset, shapeOf, foldedInts, batchAxes);
    }

    public long Opset { get; }

    /// <summary>
    /// Whether the graph is read back and differentiated again: plain ONNX only, none of <see cref="RuntimeDomain"/>'s
    /// ops, and each rule's nodes written so that their own derivative is right wherever a caller may ask for it (no
    /// special case by a Where on the data whose branch has another slope than the function there).
    /// </summary>
    public bool ReadBack => _shared.ReadBack;

    /// <summary>An emitter whose nodes go into <paramref name="body"/> (a Scan's), its constants and names shared with this one.</summary>
    public OnnxEmitter Body(GraphProto body) => new(body, _main, _shared, Opset, _shapeOf, _foldedInts, _batchAxes);

    /// <summary>A name no other value of the graph or its bodies has.</summary>
    public string Fresh(string what) => $"{_shared.Prefix}{what}_{_shared.Next++}";

    /// <summary>A float tensor's declaration (a graph's or a body's input or output): its shape left open, or given with -1 for the batch axis.</summary>
    public static ValueInfoProto FloatValue(string name, long[]? shape = null)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float };
        if (shape is not null)
        {
            tensor.Shape = new TensorShapeProto();
            tensor.Shape.Dim.AddRange(shape.Select(d => d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "batch" } : new TensorShapeProto.Types.Dimension { DimValue = d }));
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }

    public string Op(string op, params string[] inputs) => Op(op, inputs, []);

    public string Op(string op, string[] inputs, params AttributeProto[] attributes) => Ops(op, 1, inputs, attributes)[0];

    /// <summary>A node with several outputs (MaxPool's values and indices), their names in order.</summary>
    public string[] Ops(string op, int outputs, string[] inputs, params AttributeProto[] attributes)
    {
        string name = Fresh(op);
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(Enumerable.Range(0, outputs).Select(o => o == 0 ? name : $"{name}:{o}"));
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return [.. node.Output];
    }

    public void Append(NodeProto node) => _graph.Node.Add(node);

    /// <summary>ONNX Runtime's own operator domain, which the graphs' runtime has and plain ONNX lacks.</summary>
    public const string RuntimeDomain = "com.microsoft";

    /// <summary>Whether a node of <see cref="RuntimeDomain"/> was emitted: the model must then import that domain.</summary>
    public bool UsesRuntimeOps => _shared.UsesRuntimeOps;

    /// <summary>
    /// x·Wᵀ over the last two axes of W (rank <paramref name="rank"/>), as ONNX Runtime's FusedMatMul with transB, which
    /// reads W as stored: a MatMul by Transpose(W) is folded at load into a transposed copy of W that the version's other
    /// sessions cannot share (a 36 MB MLP's graphs held one such copy each). A graph the engine reads back (<see cref="ReadBack"/>)
    /// takes the copy.
    /// </summary>
    public string TimesTransposedWeight(string x, string weight, int rank = 2) =>
        _shared.ReadBack ? Op("MatMul", x, LastTwoSwapped(weight, rank)) : RuntimeOp("FusedMatMul", [x, weight], Int("transB", 1));

    /// <summary>aᵀ·b over the last two axes of <paramref name="a"/>, whose rank is <paramref name="rankA"/>; FusedMatMul with transA where allowed.</summary>
    public string TransposedTimes(string a, int rankA, string b) =>
        _shared.ReadBack ? Op("MatMul", LastTwoSwapped(a, rankA), b) : RuntimeOp("FusedMatMul", [a, b], Int("transA", 1));

    private string LastTwoSwapped(string value, int rank) =>
        Op("Transpose", [value], IntList("perm", [.. Enumerable.Range(0, rank - 2).Select(p => (long)p), rank - 1, rank - 2]));

    private string RuntimeOp(string op, string[] inputs, params AttributeProto[] attributes)
    {
        string name = Op(op, inputs, attributes);
        _graph.Node[^1].Domain = RuntimeDomain;
        _shared.UsesRuntimeOps = true;
        return name;
    }

    /// <summary>A float32 initializer of the given shape.</summary>
    public string Floats(float[] values, params long[] dims)
    {
        var tensor = new TensorProto { Name = Fresh("const"), DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        tensor.RawData = ByteString.CopyFrom(bytes);
        _main.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>An n × n identity matrix as a float32 initializer, shaped <paramref name="dims"/> (n, n where none are given).</summary>
    public string Identity(long n, params long[] dims)
    {
        var eye = new float[n * n];
        for (long k = 0; k < n; k++) eye[k * n + k] = 1;
        return Floats(eye, dims.Length == 0 ? [n, n] : dims);
    }

    /// <summary>A float32 scalar, one initializer per value.</summary>
    public string Scalar(float value) => Cached($"f:{value:R}", () => Floats([value]));

    /// <summary>A 1-D int64 initializer (axes, shapes, slice bounds), one per content.</summary>
    public string Ints(params long[] values) => Cached("i:" + string.Join(",", values), () =>
    {
        var tensor = new TensorProto { Name = Fresh("ints"), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.Add(values.Length);
        tensor.Int64Data.AddRange(values);
        _main.Initializer.Add(tensor);
        return tensor.Name;
    });

    /// <summary>A 0-D int64 initializer, one per value: a Gather at it drops the axis.</summary>
    public string Index(long value) => Cached($"s:{value}", () =>
    {
        var tensor = new TensorProto { Name = Fresh("index"), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Int64Data.Add(value);
        _main.Initializer.Add(tensor);
        return tensor.Name;
    });

    /// <summary>Element <paramref name="index"/> of <paramref name="value"/> along <paramref name="axis"/>, the axis dropped.</summary>
    public string Select(string value, long axis, long index) => Op("Gather", [value, Index(index)], Int("axis", axis));

    /// <summary>Rows [start, start + count) of <paramref name="value"/> along its first axis.</summary>
    public string Rows(string value, long start, long count) => Op("Slice", value, Ints(start), Ints(start + count), Ints(0));

    /// <summary>The values stacked along a new axis <paramref name="axis"/>.</summary>
    public string Stack(IEnumerable<string> values, long axis) =>
        Op("Concat", [.. values.Select(v => Op("Unsqueeze", v, Ints(axis)))], Int("axis", axis));

    public long[] Shape(string value) =>
        _shapeOf(value) ?? throw new NotCompilableException($"the shape of '{value}' is not known ahead of a request");

    public int Rank(string value) => Shape(value).Length;

    /// <summary>
    /// Whether axis <paramref name="axis"/> (non-negative) of <paramref name="value"/> carries the batch: its length
    /// follows the batch size. Where that is not known, axis 0, where a batch usually is.
    /// </summary>
    public bool CarriesBatch(string value, long axis) => _batchAxes(value) is { } axes ? axes.Contains(axis) : axis == 0;

    /// <summary>
    /// The values of an int64 tensor the file fixes (an initializer or a Constant node's value) or computes from shapes
    /// alone, the same for every batch, such as a Slice's bounds or a reduction's axes; null where it depends on the
    /// data or the batch, or is not int64.
    /// </summary>
    public long[]? ConstantInts(string value) => Constant(value, TensorProto.Types.DataType.Int64, t => t.Int64Data) ?? _foldedInts(value);

    /// <summary>The values of a float32 tensor the file fixes (a Resize's scales); null where it is computed or not float32.</summary>
    public float[]? ConstantFloats(string value) => Constant(value, TensorProto.Types.DataType.Float, t => t.FloatData);

    private T[]? Constant<T>(string value, TensorProto.Types.DataType type, Func<TensorProto, IEnumerable<T>> typed) where T : unmanaged
    {
        var tensor = ConstantOf(value);
        if (tensor is null || tensor.DataType != (int)type) return null;
        return tensor.RawData.IsEmpty ? typed(tensor).ToArray() : MemoryMarshal.Cast<byte, T>(tensor.RawData.Span).ToArray();
    }

    private TensorProto? ConstantOf(string value) =>
        _main.Initializer.FirstOrDefault(t => t.Name == value)
        ?? _main.Node.FirstOrDefault(n => n.OpType == "Constant" && n.Output.Contains(value))?.Attribute.FirstOrDefault(a => a.Name == "value")?.T;

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

    /// <summary>
    /// A Scan node: <paramref name="carried"/> values threaded through the steps and <paramref name="scanned"/> inputs cut
    /// along their axes, last step first where <paramref name="reverse"/>. <paramref name="body"/> writes one step from
    /// the names of the body's inputs (the carried values, then a slice of each scanned one) and gives the carried values
    /// after it and the step's outputs, which the node stacks along <paramref name="outputAxes"/> in sequence order. The
    /// body's graph stays the same size however many steps there are. Each carried value and slice comes with its shape
    /// (-1 for the batch axis), which ONNX Runtime needs to infer the body's outputs. Returns the last carried values, then
    /// the stacks. Each scanned input is declared <paramref name="steps"/> long along its axis: a graph read back
    /// (<see cref="ReadBack"/>) is differentiated again with its Scans unrolled, which needs their lengths.
    /// </summary>
    public string[] Scan((string Value, long[] Shape)[] carried, (string Value, long Axis, long[] Slice)[] scanned, long steps, bool reverse,
        long[] outputAxes, Func<OnnxEmitter, string[], string[], (string[] Carried, string[] Outputs)> body)
    {
        foreach (var (value, axis, slice) in scanned)
            if (!_main.ValueInfo.Any(v => v.Name == value)) _main.ValueInfo.Add(FloatValue(value, [.. slice[..(int)axis], steps, .. slice[(int)axis..]]));
        var graph = new GraphProto { Name = Fresh("body") };
        var inner = Body(graph);
        var carriedIn = carried.Select(_ => Fresh("carried")).ToArray();
        var slices = scanned.Select(_ => Fresh("slice")).ToArray();
        graph.Input.AddRange(carriedIn.Select((name, i) => FloatValue(name, carried[i].Shape)));
        graph.Input.AddRange(slices.Select((name, i) => FloatValue(name, scanned[i].Slice)));
        var (next, outputs) = body(inner, carriedIn, slices);
        // A body output that is one of its inputs, or another output, gets a node of its own.
        var named = new HashSet<string>(carriedIn.Concat(slices), StringComparer.Ordinal);
        graph.Output.AddRange(next.Concat(outputs).Select(v => FloatValue(named.Add(v) ? v : inner.Op("Identity", v))));
        long direction = reverse ? 1 : 0;
        return Ops("Scan", carried.Length + outputAxes.Length, [.. carried.Select(c => c.Value), .. scanned.Select(s => s.Value)],
            new AttributeProto { Name = "body", Type = AttributeProto.Types.AttributeType.Graph, G = graph },
            Int("num_scan_inputs", scanned.Length),
            IntList("scan_input_axes", [.. scanned.Select(s => s.Axis)]),
            IntList("scan_input_directions", [.. scanned.Select(_ => direction)]),
            IntList("scan_output_axes", outputAxes),
            IntList("scan_output_directions", [.. outputAxes.Select(_ => direction)]));
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
        if (!_shared.Constants.TryGetValue(key, out var name)) _shared.Constants[key] = name = make();
        return name;
    }
}
