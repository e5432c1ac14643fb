using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// What a graph says of a value's element type and rank before anything runs: declarations (inputs, outputs,
/// value_info), initializers, and what the producing node fixes (comparisons make bools, Cast its target, shape ops
/// keep their data's type). A standard function whose expansion depends on a type asks here (Attention's mask: bool or
/// additive); null where the graph does not say.
/// </summary>
internal sealed class ValueTypes
{
    private static readonly HashSet<string> MakeBools = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"];

    /// <summary>Ops whose output has the element type of the input at the given position.</summary>
    private static readonly Dictionary<string, int> KeepTypeOf = new()
    {
        ["Identity"] = 0, ["Reshape"] = 0, ["Unsqueeze"] = 0, ["Squeeze"] = 0, ["Expand"] = 0, ["Slice"] = 0, ["Transpose"] = 0,
        ["Tile"] = 0, ["Gather"] = 0, ["Flatten"] = 0, ["Concat"] = 0, ["Trilu"] = 0, ["Where"] = 1, ["CastLike"] = 1,
    };

    private readonly Dictionary<string, TypeProto.Types.Tensor> _declared = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TensorProto> _initializers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);

    public ValueTypes(GraphProto graph)
    {
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo))
            if (v.Type?.TensorType is { } t) _declared.TryAdd(v.Name, t);
        foreach (var t in graph.Initializer) _initializers.TryAdd(t.Name, t);
        foreach (var node in graph.Node)
            foreach (var o in node.Output) _producers.TryAdd(o, node);
    }

    public int? Of(string value) => Of(value, 0);

    public int? RankOf(string value)
    {
        if (_initializers.TryGetValue(value, out var init)) return init.Dims.Count;
        return _declared.TryGetValue(value, out var t) && t.Shape is { } shape ? shape.Dim.Count : null;
    }

    private int? Of(string value, int depth)
    {
        if (_declared.TryGetValue(value, out var t) && t.ElemType != 0) return t.ElemType;
        if (_initializers.TryGetValue(value, out var init)) return init.DataType;
        // Chains of shape ops are short; the bound only keeps a hostile graph from recursing without end.
        if (depth > 64 || !_producers.TryGetValue(value, out var node) || node.Domain is not ("" or "ai.onnx")) return null;
        if (MakeBools.Contains(node.OpType)) return (int)ElementType.Bool;
        return node.OpType switch
        {
            "Cast" => (int?)node.Attribute.FirstOrDefault(a => a.Name == "to")?.I,
            "Constant" => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.DataType,
            "ConstantOfShape" => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T?.DataType ?? (int)ElementType.Float,
            _ when KeepTypeOf.TryGetValue(node.OpType, out int from) && from < node.Input.Count => Of(node.Input[from], depth + 1),
            _ => null,
        };
    }
}
