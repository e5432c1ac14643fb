using System.Collections.Immutable;
using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Resolves ONNX sequences at load into the tensors they hold. A scripted loop that collects its steps
/// (`outs.append(h)` then `torch.stack(outs)`) exports as SequenceEmpty, a SequenceInsert in the Loop body and a
/// ConcatFromSequence after it, and a loop over `x.unbind(1)` as SplitToSequence, a Loop of its SequenceLength and a
/// SequenceAt in the body; once <see cref="ControlFlow"/> has unrolled the loop (<see cref="StaticValues"/> counts the
/// sequence), every sequence is a list of values the file fixes, so SplitToSequence becomes Gathers or Slices, SequenceAt
/// an Identity, SequenceLength a constant and ConcatFromSequence a Concat, and the engine sees tensors only. Refused with the reason: positions not fixed at load, positions out of range, a sequence
/// any other op reads, and concatenating an empty sequence.
/// </summary>
internal static class SequenceFolding
{
    public static IReadOnlyCollection<string> Ops { get; } =
        ["SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceAt", "SequenceLength", "ConcatFromSequence", "SplitToSequence"];

    // Each piece becomes a node; a declared axis of billions must be refused before its sizes are listed.
    private const long MaxPieces = 100_000;

    /// <summary>How SplitToSequence cuts its input: along an axis, into pieces of these sizes, each squeezed or not.</summary>
    public sealed record Split(long Axis, long[] Sizes, bool Squeeze);

    /// <summary>
    /// SplitToSequence's pieces, as ONNX Runtime (which serves Predict) cuts them: keepdims 0 squeezes the axis where the
    /// split is absent or a scalar (the specification says only where it is absent; torch writes `unbind` as a scalar
    /// split of 1 with keepdims 0); null with the reason where the file does not fix them.
    /// </summary>
    public static Split? Pieces(NodeProto node, GraphScope scope, out string why)
    {
        long Int(string name, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;
        string input = node.Input.Count > 0 ? node.Input[0] : "";
        var declared = input.Length > 0 ? scope.DeclaredShape(input) : null;
        long axis = Int("axis", 0);
        if (declared is null || axis < -declared.Length || axis >= declared.Length)
        {
            why = $"the shape of its input '{input}' is not declared (value_info, as onnx.shape_inference writes it), or axis {axis} is outside it";
            return null;
        }
        if (axis < 0) axis += declared.Length;
        if (axis == 0 || declared[axis] is not { } length)
        {
            why = axis == 0 ? "it splits along the batch axis (axis 0), which would mix samples" : $"the length of '{input}' along axis {axis} is not declared (value_info, as onnx.shape_inference writes it)";
            return null;
        }
        if (length > MaxPieces)
        {
            why = $"'{input}' is {length:N0} long along axis {axis}; a sequence of more than {MaxPieces:N0} pieces is not unrolled";
            return null;
        }
        string split = node.Input.Count > 1 ? node.Input[1] : "";
        var given = split.Length > 0 ? StaticValues.Of(split, scope) : null;
        if (split.Length > 0 && (given is null || given.Values.Any(v => v is not > 0)))
        {
            why = $"its split '{split}' is not a set of positive sizes fixed when the model loads";
            return null;
        }
        long[] sizes = given switch
        {
            null => Enumerable.Repeat(1L, (int)length).ToArray(),
            { Dims.Length: 0 } => Enumerable.Range(0, (int)((length + (long)given.Values[0]! - 1) / (long)given.Values[0]!))
                .Select(k => Math.Min((long)given.Values[0]!, length - k * (long)given.Values[0]!)).ToArray(),
            _ => given.Values.Select(v => (long)v!).ToArray(),
        };
        bool squeeze = given is null or { Dims.Length: 0 } && Int("keepdims", 1) == 0;
        if (sizes.Sum() != length || squeeze && sizes.Any(n => n != 1))
        {
            why = sizes.Sum() != length
                ? $"its split sizes add up to {sizes.Sum()}, not the {length} along axis {axis}"
                : "keepdims 0 with pieces longer than 1 (ONNX Runtime cannot drop an axis longer than 1)";
            return null;
        }
        why = "";
        return new(axis, sizes, squeeze);
    }

    public static void Fold(ModelProto model, ModelLimits limits)
    {
        if (model.Graph is not { } graph || !graph.Node.Any(IsSequenceOp)) return;
        long opset = OnnxModelReader.DefaultOpset(model);
        var names = FreshNames.Of(graph);

        var scope = new GraphScope(graph, null);
        // Immutable lists share structure: a chain of n inserts costs n log n, not the n² of copying a list per insert.
        var sequences = new Dictionary<string, ImmutableList<string>>(StringComparer.Ordinal);
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
            var w = new FunctionWriter(node, names.Fresh, folded);
            void Made(ImmutableList<string> list)
            {
                if (w.Output(0).Length > 0) sequences[w.Output(0)] = list;
            }
            ImmutableList<string> Sequence(int i) => i < node.Input.Count && sequences.TryGetValue(node.Input[i], out var list)
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
                case "SequenceEmpty": Made([]); break;
                case "SequenceConstruct": Made([.. node.Input]); break;
                case "Identity": Made(Sequence(0)); break;
                case "SequenceInsert":
                {
                    var list = Sequence(0);
                    Made(list.Insert((int)Position(2, list.Count, list.Count, end: true), w.Input(1)));
                    break;
                }
                case "SequenceErase":
                {
                    var list = Sequence(0);
                    if (list.Count == 0) throw w.Refuse("it erases from an empty sequence");
                    Made(list.RemoveAt((int)Position(1, list.Count, list.Count - 1, end: false)));
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
                case "SplitToSequence":
                {
                    var pieces = Pieces(node, scope, out string why) ?? throw w.Refuse(why);
                    long start = 0;
                    var list = ImmutableList.CreateBuilder<string>();
                    foreach (long size in pieces.Sizes)
                    {
                        list.Add(pieces.Squeeze
                            ? w.Op("Gather", [w.Input(0), w.IntScalar(start)], FunctionWriter.Attr("axis", pieces.Axis))
                            : w.Op("Slice", [w.Input(0), w.Ints(start), w.Ints(start + size), w.Ints(pieces.Axis)]));
                        start += size;
                    }
                    Made(list.ToImmutable());
                    break;
                }
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
