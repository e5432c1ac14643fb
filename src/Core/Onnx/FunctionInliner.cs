using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Replaces each call of a model-local function (torch.onnx.export's export_modules_as_functions writes one per module
/// class, nested) by the function's body, so the engine, its derivative graphs and every rule see plain ops. Formal
/// inputs and outputs take the call's values, the body's own values fresh names under the call's name (so errors still
/// say where a node came from), and attributes that refer to the function's (ref_attr_name) the call's, else the
/// function's default, else none. A function that calls itself, functions nested deeper than Limits:MaxNestingDepth, and
/// an inlined graph over Limits:MaxNodes or Limits:MaxModelFileMiB are refused before anything is copied.
/// </summary>
internal static class FunctionInliner
{
    private readonly record struct Key(string Domain, string Name, string Overload);

    public static void Inline(ModelProto model, ModelLimits limits)
    {
        if (model.Functions.Count == 0 || model.Graph is not { } graph) return;
        var functions = new Dictionary<Key, FunctionProto>();
        foreach (var f in model.Functions)
            if (!functions.TryAdd(new Key(Domain(f.Domain), f.Name, f.Overload), f))
                throw new ModelLoadException($"function {Describe(f)} is defined more than once");
        long opset = OnnxModelReader.DefaultOpset(model);
        foreach (var f in functions.Values)
            if (f.OpsetImport.FirstOrDefault(o => Domain(o.Domain) == "") is { } own && own.Version != opset)
                throw new ModelLoadException($"function {Describe(f)} imports opset {own.Version} where the model imports {opset}; export it with the model's opset");

        var size = new Sizer(functions, limits);
        long nodes = 0, bytes = 0;
        foreach (var node in graph.Node)
        {
            var (n, b) = size.Of(node, 0);
            nodes += n;
            bytes += b;
        }
        if (nodes > limits.MaxNodes)
            throw new ModelLoadException($"the graph holds {nodes:N0} nodes with its functions inlined, over Limits:MaxNodes {limits.MaxNodes:N0}");
        if (bytes > limits.MaxFileBytes)
            throw new ModelLoadException($"the graph holds {bytes:N0} bytes with its functions inlined, over Limits:MaxModelFileMiB ({limits.MaxFileBytes:N0} bytes)");

        var taken = FreshNames.Of(graph);
        var inlined = new List<NodeProto>();
        var expander = new Expander(functions, taken, inlined);
        foreach (var node in graph.Node) expander.Add(node);
        graph.Node.Clear();
        graph.Node.AddRange(inlined);
        model.Functions.Clear();
    }

    private static string Domain(string domain) => domain is "ai.onnx" ? "" : domain;

    private static Key KeyOf(NodeProto node) => new(Domain(node.Domain), node.OpType, node.Overload);

    private static string Describe(FunctionProto f) => $"'{(f.Domain.Length > 0 ? f.Domain + "." : "")}{f.Name}'";

    /// <summary>Nodes and protobuf bytes a node becomes once inlined, per function memoised; refuses recursion and deep nesting.</summary>
    private sealed class Sizer(Dictionary<Key, FunctionProto> functions, ModelLimits limits)
    {
        private readonly Dictionary<Key, (long Nodes, long Bytes)> _known = [];
        private readonly HashSet<Key> _open = [];

        public (long Nodes, long Bytes) Of(NodeProto node, int depth)
        {
            var key = KeyOf(node);
            if (!functions.TryGetValue(key, out var f)) return (1, node.CalculateSize());
            if (_known.TryGetValue(key, out var known)) return known;
            if (depth >= limits.MaxNestingDepth)
                throw new ModelLoadException($"functions nest deeper than Limits:MaxNestingDepth {limits.MaxNestingDepth} at {Describe(f)}");
            if (!_open.Add(key)) throw new ModelLoadException($"function {Describe(f)} calls itself, directly or through another function");
            long nodes = 0, bytes = 0;
            foreach (var body in f.Node)
            {
                var (n, b) = Of(body, depth + 1);
                // Saturate: a hostile nesting can overflow a long long before it reaches the limits.
                nodes = Math.Min(nodes + n, long.MaxValue / 2);
                bytes = Math.Min(bytes + b, long.MaxValue / 2);
            }
            _open.Remove(key);
            return _known[key] = (nodes, bytes);
        }
    }

    private sealed class Expander(Dictionary<Key, FunctionProto> functions, FreshNames taken, List<NodeProto> into)
    {
        private int _calls;

        public void Add(NodeProto node)
        {
            if (!functions.TryGetValue(KeyOf(node), out var f))
            {
                into.Add(node);
                return;
            }
            string call = node.Name.Length > 0 ? node.Name : $"{node.OpType}_{_calls}";
            _calls++;
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < f.Input.Count; i++) values[f.Input[i]] = i < node.Input.Count ? node.Input[i] : "";
            for (int o = 0; o < f.Output.Count; o++) values[f.Output[o]] = o < node.Output.Count && node.Output[o].Length > 0 ? node.Output[o] : Fresh($"{call}/{f.Output[o]}");
            string Bound(string value) =>
                value.Length == 0 ? "" : values.TryGetValue(value, out var name) ? name : values[value] = Fresh($"{call}/{value}");
            foreach (var body in f.Node)
            {
                var copy = new NodeProto
                {
                    Name = $"{call}/{(body.Name.Length > 0 ? body.Name : body.OpType)}",
                    OpType = body.OpType,
                    Domain = body.Domain,
                    Overload = body.Overload,
                };
                copy.Input.AddRange(body.Input.Select(Bound));
                copy.Output.AddRange(body.Output.Select(Bound));
                foreach (var attribute in body.Attribute)
                {
                    if (attribute.RefAttrName.Length == 0)
                    {
                        copy.Attribute.Add(attribute);
                        continue;
                    }
                    var given = node.Attribute.FirstOrDefault(a => a.Name == attribute.RefAttrName)
                        ?? f.AttributeProto.FirstOrDefault(a => a.Name == attribute.RefAttrName);
                    if (given is null) continue;
                    var bound = given.Clone();
                    bound.Name = attribute.Name;
                    copy.Attribute.Add(bound);
                }
                Add(copy);
            }
        }

        private string Fresh(string name) => taken.Fresh(name);
    }
}
