using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// The values one graph can see before anything runs: its own and, for a control-flow body, its enclosing graphs'
/// (ONNX lets a body read any value of an outer scope by name). What a name resolves to is looked up innermost first.
/// </summary>
internal sealed class GraphScope
{
    private readonly Dictionary<string, TensorProto> _initializers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TensorShapeProto> _shapes = new(StringComparer.Ordinal);
    private readonly IReadOnlyDictionary<string, StaticValues.Known> _assumed;
    private readonly GraphScope? _outer;

    /// <param name="assumed">Values known to the graph's unrolling though not to the graph: a Loop body's condition input, true in every iteration unrolled.</param>
    public GraphScope(GraphProto graph, GraphScope? outer, IReadOnlyDictionary<string, StaticValues.Known>? assumed = null)
    {
        _outer = outer;
        _assumed = assumed ?? new Dictionary<string, StaticValues.Known>();
        foreach (var t in graph.Initializer) _initializers.TryAdd(t.Name, t);
        foreach (var node in graph.Node)
            foreach (var o in node.Output)
                if (o.Length > 0) _producers.TryAdd(o, node);
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo))
            if (v.Type?.TensorType?.Shape is { } shape) _shapes.TryAdd(v.Name, shape);
    }

    public StaticValues.Known? Assumed(string name) =>
        _assumed.TryGetValue(name, out var known) ? known : _producers.ContainsKey(name) ? null : _outer?.Assumed(name);

    public TensorProto? Initializer(string name) =>
        _initializers.TryGetValue(name, out var t) ? t : _producers.ContainsKey(name) ? null : _outer?.Initializer(name);

    public NodeProto? Producer(string name) =>
        _producers.TryGetValue(name, out var n) ? n : _initializers.ContainsKey(name) ? null : _outer?.Producer(name);

    /// <summary>Each axis's size where the graph declares it (null where symbolic or unsaid); null for an undeclared value.</summary>
    public long?[]? DeclaredShape(string name)
    {
        if (_initializers.TryGetValue(name, out var t)) return t.Dims.Select(d => (long?)d).ToArray();
        if (_shapes.TryGetValue(name, out var shape))
            return shape.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : (long?)null).ToArray();
        return _producers.ContainsKey(name) ? null : _outer?.DeclaredShape(name);
    }
}
