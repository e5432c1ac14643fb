using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Ops that ONNX defines as functions of other ops, expanded at parse into the ops the engine has rules for: every
/// derivative (forward, reverse, compiled graphs, Hessians) then comes from rules already tested, and ONNX Runtime still
/// runs the file's own node for Predict. Each expansion refuses, with the reason, what it does not write.
/// </summary>
internal static class StandardFunctions
{
    private sealed record Function(int Since, Action<FunctionWriter> Expand);

    private static readonly Dictionary<string, Function> Functions = new()
    {
        ["Attention"] = new(23, AttentionFunction.Expand),
        ["RotaryEmbedding"] = new(23, RotaryEmbeddingFunction.Expand),
    };

    /// <summary>The ops expanded here (they have no row in the op table).</summary>
    public static IReadOnlyCollection<string> Ops => Functions.Keys;

    public static void Expand(ModelProto model, ModelLimits limits)
    {
        if (model.Graph is not { } graph || !graph.Node.Any(IsStandardFunction)) return;
        long opset = OnnxModelReader.DefaultOpset(model);
        var names = FreshNames.Of(graph);

        var types = new ValueTypes(graph);
        var expanded = new List<NodeProto>(graph.Node.Count);
        int calls = 0;
        foreach (var node in graph.Node)
        {
            if (!IsStandardFunction(node))
            {
                expanded.Add(node);
                continue;
            }
            var function = Functions[node.OpType];
            if (node.Name.Length == 0) node.Name = $"{node.OpType}_{calls}";
            calls++;
            if (opset < function.Since)
                throw new ModelLoadException($"node '{node.Name}' ({node.OpType}): {node.OpType} is defined from opset {function.Since}; the model imports opset {opset}");
            function.Expand(new FunctionWriter(node, names.Fresh, expanded, types));
            // Checked as it grows: a file of many small calls must not expand past the limit before it is refused.
            if (expanded.Count > limits.MaxNodes)
                throw new ModelLoadException($"the graph holds over {limits.MaxNodes:N0} nodes with its {node.OpType} nodes expanded into the ops they are defined by, over Limits:MaxNodes");
        }
        graph.Node.Clear();
        graph.Node.AddRange(expanded);
    }

    private static bool IsStandardFunction(NodeProto node) => node.Domain is "" or "ai.onnx" && Functions.ContainsKey(node.OpType);
}
