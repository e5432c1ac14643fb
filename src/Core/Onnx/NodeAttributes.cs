using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>A node's attributes by name, with the defaults the ONNX spec gives passed in by the rule.</summary>
public sealed class NodeAttributes
{
    private readonly Dictionary<string, AttributeProto> _byName;

    internal NodeAttributes(IEnumerable<AttributeProto> attributes) =>
        _byName = attributes.GroupBy(a => a.Name).ToDictionary(g => g.Key, g => g.Last());

    public bool Has(string name) => _byName.ContainsKey(name);

    public long Int(string name, long fallback) => _byName.TryGetValue(name, out var a) ? a.I : fallback;

    public float Float(string name, float fallback) => _byName.TryGetValue(name, out var a) ? a.F : fallback;

    public string String(string name, string fallback) =>
        _byName.TryGetValue(name, out var a) ? a.S.ToStringUtf8() : fallback;

    public long[]? Ints(string name) => _byName.TryGetValue(name, out var a) ? a.Ints.ToArray() : null;

    public float[]? Floats(string name) => _byName.TryGetValue(name, out var a) ? a.Floats.ToArray() : null;

    public string[]? Strings(string name) => _byName.TryGetValue(name, out var a) ? a.Strings.Select(s => s.ToStringUtf8()).ToArray() : null;

    internal TensorProto? Tensor(string name) => _byName.TryGetValue(name, out var a) && a.T is not null ? a.T : null;
}

/// <summary>Initial values of a graph: initializers and Constant nodes' payloads are read by this.</summary>
internal static class ConstantTensors
{
    internal static torch.Tensor FromAttribute(NodeAttributes a, torch.ScalarType computeType)
    {
        if (a.Tensor("value") is { } t) return TensorProtoReader.ToTensor(t, computeType);
        if (a.Has("value_float")) return torch.tensor(a.Float("value_float", 0), computeType);
        if (a.Floats("value_floats") is { } fs) return torch.tensor(fs).to_type(computeType);
        if (a.Has("value_int")) return torch.tensor(a.Int("value_int", 0), torch.ScalarType.Int64);
        if (a.Ints("value_ints") is { } ints) return torch.tensor(ints, torch.ScalarType.Int64);
        throw new NotSupportedException(
            "Constant needs one of value, value_float(s), value_int(s); sparse and string constants are not supported");
    }
}
