using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Resolves ONNX sequences at load into the tensors they hold. A scripted loop that collects its steps
/// (`outs.append(h)` then `torch.stack(outs)`) exports as SequenceEmpty, a SequenceInsert in the Loop body and a
/// ConcatFromSequence after it; once <see cref="ControlFlow"/> has unrolled the loop, every sequence is a list of values
/// the file fixes, so SequenceAt becomes an Identity, SequenceLength a constant and ConcatFromSequence a Concat, and the
/// engine sees tensors only. Refused with the reason: positions not fixed at load, positions out of range, a sequence
/// any other op reads, and concatenating an empty sequence.
/// </summary>
internal static class SequenceFolding
{
    public static IReadOnlyCollection<string> Ops { get; } =
        ["SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceAt", "SequenceLength", "ConcatFromSequence"];

    public static void Fold(ModelProto model, ModelLimits limits)
    {
        if (model.Graph is not { } graph || !graph.Node.Any(IsSequenceOp)) return;
        long opset = model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        var taken = new HashSet<string>(graph.Input.Select(v => v.Name).Concat(graph.Initializer.Select(t => t.Name))
            .Concat(graph.Node.SelectMany(n => n.Output)), StringComparer.Ordinal);
        string Fresh(string name)
        {
            string fresh = name;
            for (int k = 1; !taken.Add(fresh); k++) fresh = $"{name}#{k}";
            return fresh;
        }

        var scope = new GraphScope(graph, null);
        var sequences = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        var folded = new List<NodeProto>(graph.Node.Count);
        int calls = 0;
        foreach (var node in graph.Node)
        {
            bool reads = node.Input.Any(sequences.ContainsKey);
            if (!IsSequenceOp(node) && !(reads && node.OpType == "Identity"))
            {
                if (reads)
                    throw new ModelLoadException($"node '{node.Name}' ({node.OpType}) reads the sequence '{node.Input.First(sequences.ContainsKey)}'; a sequence is served only through the sequence ops, into tensors");
                folded.Add(node);
                continue;
            }
            if (node.Name.Length == 0) node.Name = $"{node.OpType}_{calls}";
            calls++;
            var w = new FunctionWriter(node, Fresh, folded);
            IReadOnlyList<string> Sequence(int i) => i < node.Input.Count && sequences.TryGetValue(node.Input[i], out var list)
                ? list
                : throw w.Refuse($"input {i} '{w.Input(i)}' is not a sequence made before it by SequenceEmpty, SequenceConstruct, SequenceInsert or SequenceErase");
            long Position(int i, int count, long fallback, bool end)
            {
                if (w.Input(i).Length == 0) return fallback;
                if (StaticValues.Of(w.Input(i), scope)?.Scalar is not { } p)
                    throw w.Refuse($"its position '{w.Input(i)}' is not fixed when the model loads");
                long upper = end ? count : count - 1;
                if (p < -count || p > upper)
                    throw w.Refuse($"its position {p} is outside [{-count}, {upper}] for a sequence of {count}");
                return p < 0 ? p + count : p;
            }

            switch (node.OpType)
            {
                case "SequenceEmpty": sequences[w.Output(0)] = []; break;
                case "SequenceConstruct": sequences[w.Output(0)] = node.Input.ToList(); break;
                case "Identity": sequences[w.Output(0)] = Sequence(0); break;
                case "SequenceInsert":
                {
                    var list = Sequence(0).ToList();
                    list.Insert((int)Position(2, list.Count, list.Count, end: true), w.Input(1));
                    sequences[w.Output(0)] = list;
                    break;
                }
                case "SequenceErase":
                {
                    var list = Sequence(0).ToList();
                    if (list.Count == 0) throw w.Refuse("it erases from an empty sequence");
                    list.RemoveAt((int)Position(1, list.Count, list.Count - 1, end: false));
                    sequences[w.Output(0)] = list;
                    break;
                }
                case "SequenceAt":
                {
                    var list = Sequence(0);
                    if (list.Count == 0) throw w.Refuse("it reads from an empty sequence");
                    w.Into(w.Output(0), "Identity", [list[(int)Position(1, list.Count, 0, end: false)]]);
                    break;
                }
                case "SequenceLength": w.Into(w.Output(0), "Identity", [w.IntScalar(Sequence(0).Count)]); break;
                default: Concat(w, Sequence(0), opset); break;
            }
            if (folded.Count > limits.MaxNodes)
                throw new ModelLoadException($"the graph holds over {limits.MaxNodes:N0} nodes with its sequences resolved into tensors, over Limits:MaxNodes");
        }
        if (graph.Output.FirstOrDefault(o => sequences.ContainsKey(o.Name)) is { } output)
            throw new ModelLoadException($"graph output '{output.Name}' is a sequence; every output must be a tensor");
        graph.Node.Clear();
        graph.Node.AddRange(folded);
    }

    private static bool IsSequenceOp(NodeProto node) => node.Domain is "" or "ai.onnx" && Ops.Contains(node.OpType);

    /// <summary>ConcatFromSequence: a Concat along axis, or with new_axis a stack (each unsqueezed there first).</summary>
    private static void Concat(FunctionWriter w, IReadOnlyList<string> list, long opset)
    {
        if (list.Count == 0) throw w.Refuse("it concatenates an empty sequence, whose shape the file does not fix");
        long axis = w.Int("axis", long.MinValue);
        if (axis == long.MinValue) throw w.Refuse("ConcatFromSequence needs its axis attribute");
        if (w.Int("new_axis", 0) == 0) w.Into(w.Output(0), "Concat", [.. list], FunctionWriter.Attr("axis", axis));
        else w.Stack(list, axis, w.Output(0), opset);
    }
}
