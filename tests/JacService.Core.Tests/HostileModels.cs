using Google.Protobuf;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Tests;

/// <summary>
/// Model files that each break one model limit (Limits:*, JacService.Core.Models.ModelLimits) at its default and are
/// otherwise valid, built in memory so no big file is committed: the Core tests load them one by one, the integration
/// test serves them beside good models. Each is small on disk; what it declares or plans is what is huge.
/// </summary>
public static class HostileModels
{
    private const int Float = 1, Int64 = 7;

    /// <summary>The default limits' values, which the expected messages quote.</summary>
    public const int MaxNodes = 100_000, MaxGraphDepth = 10_000, MaxStringBytes = 64 << 10, MaxAttributeElements = 100_000, MaxNestingDepth = 32;
    public const long MaxPlannedElements = 1L << 28;

    /// <summary>One hostile model: its name in a repository, its bytes, and the message its load fails with.</summary>
    public sealed record Case(string Name, byte[] Bytes, string Message)
    {
        public override string ToString() => Name;
    }

    public static IReadOnlyList<Case> All { get; } =
    [
        new("nesting", Nested(15),
            $"the model nests protobuf messages deeper than Limits:MaxNestingDepth {MaxNestingDepth}"),
        new("many_nodes", Chain(MaxNodes + 1),
            $"the graph has 100,001 nodes, over Limits:MaxNodes {MaxNodes}"),
        new("subgraph_nodes", WithSubgraph(MaxNodes),
            $"graph.node[0] ('r').attribute[0] ('body').g brings the nodes of the model (subgraphs included) to 100,001, over Limits:MaxNodes {MaxNodes}"),
        new("deep_chain", Chain(MaxGraphDepth + 1),
            $"the graph is 10,001 nodes deep at node 'r10000' (its longest chain), over Limits:MaxGraphDepth {MaxGraphDepth}"),
        new("huge_initializer", Model([Node("Relu", "r", ["x"], "y")], initializers: [Declared("w", Float, 1_000_000, 1_000_000)]),
            "graph.initializer[0] ('w') declares dims [1000000, 1000000] of ONNX type 1: 4,000,000,000,000 bytes on the device, " +
            "over Limits:MaxTensorMiB (536,870,912 bytes)"),
        new("huge_constant", Model([Node("Constant", "c", [], "c0", Attr("value", Declared("big", Int64, 300_000_000))), Node("Relu", "r", ["x"], "y")]),
            "graph.node[0] ('c').attribute[0] ('value').t ('big') declares dims [300000000] of ONNX type 7: 2,400,000,000 bytes on the device, " +
            "over Limits:MaxTensorMiB (536,870,912 bytes)"),
        // Three tensors of 400 MiB each, every one under the per-tensor limit.
        new("many_initializers", Model([Node("Relu", "r", ["x"], "y")],
                initializers: [Declared("w0", Float, 400, 262_144), Declared("w1", Float, 400, 262_144), Declared("w2", Float, 400, 262_144)]),
            "graph.initializer[2] ('w2') brings the tensors of the model to 1,258,291,200 bytes on the device, " +
            "over Limits:MaxInitializerMiB (1,073,741,824 bytes)"),
        new("long_doc_string", Model([With(Node("Relu", "r", ["x"], "y"), n => n.DocString = new string('d', MaxStringBytes + 1))]),
            $"graph.node[0] ('r').doc_string has 65,537 bytes, over Limits:MaxStringBytes {MaxStringBytes}"),
        new("long_name", Model([Node("Relu", new string('n', 1_000_000), ["x"], "y")]),
            $"graph.node[0].name has 1,000,000 bytes, over Limits:MaxStringBytes {MaxStringBytes}"),
        new("long_attribute_list", Model([Node("Transpose", "t", ["x"], "y", Attr("perm", Enumerable.Range(0, MaxAttributeElements + 1).Select(i => (long)i)))]),
            $"graph.node[0] ('t').attribute[0] ('perm').ints holds 100,001 values, over Limits:MaxAttributeElements {MaxAttributeElements}"),
        new("many_attributes", Model([Node("Relu", "r", ["x"], "y", Enumerable.Range(0, MaxAttributeElements + 1).Select(i => Attr($"a{i}", i)).ToArray())]),
            $"graph.node[0] ('r') has 100,001 attributes, over Limits:MaxAttributeElements {MaxAttributeElements}"),
        // Dynamic axes: no plan at load, but what depends on no input is evaluated first, under the limit.
        new("constant_of_shape", Model([Node("ConstantOfShape", "big", ["shape"], "c"), Node("Add", "y_", ["x", "c"], "y")],
                inputShape: [-1, -1], initializers: [Ints("shape", 1_000_000, 1_000_000)]),
            Planned("node 'big' (ConstantOfShape) would make 1,000,000,000,000 elements", 1_000_000_000_000)),
        // Static axes: the batch-1 plan is built at load.
        new("expand", Model([Node("Expand", "e", ["x", "shape"], "y")], inputShape: [-1, 1], initializers: [Ints("shape", 1_000_000, 1_000_000)]),
            Planned("node 'e' (Expand) would make 1,000,000,000,000 elements", 1 + 1_000_000_000_000)),
        // [32768, 1] times [1, 32768]: two 128 KiB weights, a 4 GiB product.
        new("outer_product", Model([Node("Mul", "outer", ["a", "b"], "p"), Node("Add", "y_", ["x", "p"], "y")], inputShape: [-1, 1],
                initializers: [Floats("a", 32_768, 1), Floats("b", 1, 32_768)]),
            Planned("node 'outer' (Mul) would make 1,073,741,824 elements", 1 + 1_073_741_824)),
        // A [1, 4] input tiled 2^30 times along its second axis.
        new("tile", Model([Node("Tile", "t", ["x", "repeats"], "y")], inputShape: [-1, 4], initializers: [Ints("repeats", 1, 1 << 30)]),
            Planned("node 't' (Tile) would make 4,294,967,296 elements", 4 + 4_294_967_296)),
        // The outer product of two 32,768-element weights as an Einsum.
        new("einsum_outer", Model([Node("Einsum", "outer", ["a", "b"], "p", Attr("equation", "ai,aj->ij")), Node("Add", "y_", ["x", "p"], "y")], inputShape: [-1, 1],
                initializers: [Floats("a", 1, 32_768), Floats("b", 1, 32_768)]),
            Planned("node 'outer' (Einsum) would make 1,073,741,824 elements", 1 + 1_073_741_824)),
        // A [1, 4] input resized to [1, 2^30]: the output, and its tables (2 taps per output position, and the transpose).
        new("resize", Model([Node("Resize", "r", ["x", "", "", "sizes"], "y", Attr("mode", "linear"))], initializers: [Ints("sizes", 1, 1 << 30)]),
            Planned("node 'r' (Resize) would make 5,368,709,120 elements", 4 + 5_368_709_120)),
        // One 2^20-element value concatenated with itself 300 times.
        new("concat_repeats", Model([Node("ConstantOfShape", "c", ["shape"], "c0"), Node("Concat", "cat", Enumerable.Repeat("c0", 300).ToArray(), "y", Attr("axis", 0))],
                initializers: [Ints("shape", 1, 1 << 20)]),
            Planned("node 'cat' (Concat) would make 314,572,800 elements", 4 + (1 << 20) + 314_572_800)),
        new("huge_input", Model([Node("Relu", "r", ["x"], "y")], inputShape: [-1, 1_000_000, 1_000_000]),
            Planned("input 'x' of shape [1, 1000000, 1000000] takes 1,000,000,000,000 elements", 1_000_000_000_000)),
        // Model-local functions: one that calls itself, and 30 levels of two calls each (2^29 nodes once inlined).
        new("function_recursion", Model([Call("f", "call", ["x"], "y")], functions: [Function("f", [Call("f", "again", ["x"], "y")])]),
            "function 'local.f' calls itself, directly or through another function"),
        new("function_blowup", Model([Call("f29", "call", ["x"], "y")], functions: Doubling(30)),
            $"the graph holds 536,870,912 nodes with its functions inlined, over Limits:MaxNodes {MaxNodes:N0}"),
    ];

    private static string Planned(string what, long total) =>
        $"planning one sample: {what}, bringing the plan to {total:N0}, over Limits:MaxPlannedElements {MaxPlannedElements}";

    /// <summary>
    /// Float input x of <paramref name="inputShape"/> (default [B, 4]; -1 is a dynamic axis, as the batch axis always is)
    /// through <paramref name="nodes"/> to y. Without a dynamic axis after the batch axis, loading builds the batch-1 plan.
    /// </summary>
    public static byte[] Model(NodeProto[] nodes, long[]? inputShape = null, TensorProto[]? initializers = null, FunctionProto[]? functions = null)
    {
        var graph = new GraphProto { Name = "hostile" };
        graph.Node.Add(nodes);
        graph.Initializer.Add(initializers ?? []);
        graph.Input.Add(Value("x", inputShape ?? [-1, 4]));
        graph.Output.Add(Value("y", []));
        var model = new ModelProto { IrVersion = 8, ProducerName = "HostileModels", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        if (functions is { Length: > 0 })
        {
            model.Functions.Add(functions);
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = FunctionDomain, Version = 1 });
        }
        return model.ToByteArray();
    }

    /// <summary>The domain of the model-local functions these models define.</summary>
    public const string FunctionDomain = "local";

    /// <summary>A call of the local function <paramref name="function"/>.</summary>
    public static NodeProto Call(string function, string name, string[] inputs, string output, params AttributeProto[] attributes)
    {
        var node = Node(function, name, inputs, output, attributes);
        node.Domain = FunctionDomain;
        return node;
    }

    /// <summary>A local function of one input x and one output y.</summary>
    public static FunctionProto Function(string name, NodeProto[] body, params AttributeProto[] defaults)
    {
        var f = new FunctionProto { Name = name, Domain = FunctionDomain };
        f.Input.Add("x");
        f.Output.Add("y");
        f.Node.Add(body);
        f.AttributeProto.Add(defaults);
        f.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });
        return f;
    }

    /// <summary>f0 a Relu, and each f(k) two calls of f(k-1) in a row: f(k) inlines to 2^k nodes.</summary>
    private static FunctionProto[] Doubling(int levels) =>
        Enumerable.Range(0, levels).Select(k => k == 0
            ? Function("f0", [Node("Relu", "r", ["x"], "y")])
            : Function($"f{k}", [Call($"f{k - 1}", "first", ["x"], "h"), Call($"f{k - 1}", "second", ["h"], "y")])).ToArray();

    /// <summary>A chain of <paramref name="length"/> Relu nodes r0 → r1 → …, x to y.</summary>
    public static byte[] Chain(int length) =>
        Model(Enumerable.Range(0, length).Select(i => Node("Relu", $"r{i}", [i == 0 ? "x" : $"v{i - 1}"], i == length - 1 ? "y" : $"v{i}")).ToArray());

    /// <summary>A Relu carrying a subgraph attribute 'body' of <paramref name="nodes"/> nodes (the protobuf allows it on any node).</summary>
    private static byte[] WithSubgraph(int nodes)
    {
        var body = new GraphProto { Name = "body" };
        body.Node.Add(Enumerable.Range(0, nodes).Select(i => Node("Relu", $"b{i}", ["x"], $"b{i}_out")));
        return Model([Node("Relu", "r", ["x"], "y", new AttributeProto { Name = "body", Type = AttributeProto.Types.AttributeType.Graph, G = body })]);
    }

    /// <summary>A Relu whose attribute holds a graph whose node holds a graph …, <paramref name="levels"/> deep (three messages a level).</summary>
    private static byte[] Nested(int levels)
    {
        GraphProto? inner = null;
        for (int level = 0; level < levels; level++)
        {
            var node = Node("Relu", $"n{level}", ["x"], "y");
            if (inner is not null) node.Attribute.Add(new AttributeProto { Name = "body", Type = AttributeProto.Types.AttributeType.Graph, G = inner });
            inner = new GraphProto { Name = $"level{level}" };
            inner.Node.Add(node);
        }
        return Model([Node("Relu", "r", ["x"], "y", new AttributeProto { Name = "body", Type = AttributeProto.Types.AttributeType.Graph, G = inner })]);
    }

    public static NodeProto Node(string op, string name, string[] inputs, string output, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.Add(inputs);
        node.Output.Add(output);
        node.Attribute.Add(attributes);
        return node;
    }

    private static NodeProto With(NodeProto node, Action<NodeProto> change)
    {
        change(node);
        return node;
    }

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(values);
        return a;
    }

    public static AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Attr(string name, TensorProto value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };

    /// <summary>A tensor that declares its dims but holds no data: the limits are checked on what it declares.</summary>
    public static TensorProto Declared(string name, int type, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = type };
        t.Dims.Add(dims);
        return t;
    }

    public static TensorProto Ints(string name, params long[] values)
    {
        var t = Declared(name, Int64, values.Length);
        t.Int64Data.Add(values);
        return t;
    }

    public static TensorProto Floats(string name, long rows, long columns)
    {
        var t = Declared(name, Float, rows, columns);
        t.FloatData.Add(Enumerable.Repeat(0.5f, (int)(rows * columns)));
        return t;
    }

    private static ValueInfoProto Value(string name, long[] shape)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = new TensorShapeProto() };
        foreach (var d in shape)
            tensorType.Shape.Dim.Add(d > 0 ? new TensorShapeProto.Types.Dimension { DimValue = d } : new TensorShapeProto.Types.Dimension { DimParam = "dynamic" });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }
}
