using JacService.Core.Models;
using JacService.Core.Onnx.Proto;

namespace JacService.Core.Onnx;

/// <summary>
/// Unrolls control flow whose shape the file fixes: an If whose condition, a Loop whose trip count, and a Scan whose
/// sequence length resolve when the model loads (<see cref="StaticValues"/>: constants, and shape arithmetic on declared
/// axes, as torch writes a scripted loop over a sequence). The body is copied once per iteration under fresh names, so
/// every derivative, compiled graph and Hessian comes from the rules of the ops inside, and ONNX Runtime still runs the
/// file's own nodes for Predict. Refused with the reason: a data-dependent If (one branch for a whole batch), a while
/// loop (a condition its body computes), counts or lengths the file leaves open, and unrollings over Limits:MaxNodes or
/// Limits:MaxModelFileMiB, counted before anything is copied.
/// </summary>
internal static class ControlFlow
{
    public static IReadOnlyCollection<string> Ops { get; } = ["If", "Loop", "Scan"];

    public static void Expand(ModelProto model, ModelLimits limits)
    {
        if (model.Graph is not { } graph || !graph.Node.Any(IsControlFlow)) return;
        var taken = new HashSet<string>(StringComparer.Ordinal);
        Names(graph, taken, 0, limits.MaxNestingDepth);
        new Unrolling(OnnxModelReader.DefaultOpset(model), limits, new FreshNames(taken)).Graph(graph);
    }

    private static bool IsControlFlow(NodeProto node) => node.Domain is "" or "ai.onnx" && Ops.Contains(node.OpType);

    /// <summary>Every name any scope defines, so that copies never collide with one.</summary>
    private static void Names(GraphProto graph, HashSet<string> taken, int depth, int maxDepth)
    {
        if (depth > maxDepth) throw new ModelLoadException($"control flow nests deeper than Limits:MaxNestingDepth {maxDepth}");
        foreach (var v in graph.Input) taken.Add(v.Name);
        foreach (var t in graph.Initializer) taken.Add(t.Name);
        foreach (var node in graph.Node)
        {
            foreach (var o in node.Output) taken.Add(o);
            foreach (var a in node.Attribute)
            {
                if (a.G is { } g) Names(g, taken, depth + 1, maxDepth);
                foreach (var sub in a.Graphs) Names(sub, taken, depth + 1, maxDepth);
            }
        }
    }

    private sealed class Unrolling(long opset, ModelLimits limits, FreshNames names)
    {
        private int _calls;

        private string Fresh(string name) => names.Fresh(name);

        /// <summary>
        /// Unrolls every If, Loop and Scan of <paramref name="graph"/>, outermost first: a pass copies each body into the
        /// graph, control flow inside it included, and the next pass unrolls those copies, which then see their own
        /// iteration's number as a constant (an `if t == 0` inside a loop resolves per iteration). Passes are bounded by the
        /// nesting depth, and each unrolling's size is checked before it is copied.
        /// </summary>
        public void Graph(GraphProto graph)
        {
            for (int pass = 0; graph.Node.Any(IsControlFlow); pass++)
            {
                if (pass > limits.MaxNestingDepth)
                    throw new ModelLoadException($"control flow nests deeper than Limits:MaxNestingDepth {limits.MaxNestingDepth}");
                var scope = new GraphScope(graph, null);
                var nodes = new List<NodeProto>(graph.Node.Count);
                foreach (var node in graph.Node)
                {
                    if (!IsControlFlow(node))
                    {
                        nodes.Add(node);
                        continue;
                    }
                    if (node.Name.Length == 0) node.Name = $"{node.OpType}_{_calls}";
                    _calls++;
                    var w = new FunctionWriter(node, Fresh, nodes);
                    switch (node.OpType)
                    {
                        case "If": If(node, w, graph, scope); break;
                        case "Loop": Loop(node, w, graph, scope, nodes.Count); break;
                        default: Scan(node, w, graph, scope, nodes.Count); break;
                    }
                }
                if (nodes.Count > limits.MaxNodes)
                    throw new ModelLoadException($"the graph holds {nodes.Count:N0} nodes with its control flow unrolled, over Limits:MaxNodes {limits.MaxNodes:N0}");
                graph.Node.Clear();
                graph.Node.AddRange(nodes);
            }
        }

        private void If(NodeProto node, FunctionWriter w, GraphProto graph, GraphScope scope)
        {
            w.Require("cond");
            if (StaticValues.Of(w.Input(0), scope)?.Scalar is not { } cond)
                throw w.Refuse($"its condition '{w.Input(0)}' is not fixed when the model loads; a branch chosen by the data is not served (ONNX's If takes one branch for a whole batch, so samples would change each other's results)");
            var branch = Body(node, w, cond != 0 ? "then_branch" : "else_branch");
            if (branch.Input.Count > 0 || branch.Output.Count < node.Output.Count)
                throw w.Refuse($"its {(cond != 0 ? "then" : "else")} branch takes {branch.Input.Count} inputs and gives {branch.Output.Count} outputs for the node's {node.Output.Count}; a branch takes none and gives each");
            var outputs = Copy(branch, [], $"{node.Name}/{(cond != 0 ? "then" : "else")}", Hoist(branch, graph, node.Name, w), w);
            for (int o = 0; o < node.Output.Count; o++)
                if (w.Output(o).Length > 0) w.Into(w.Output(o), "Identity", [outputs[o]]);
        }

        private void Loop(NodeProto node, FunctionWriter w, GraphProto graph, GraphScope scope, int written)
        {
            if (w.Input(0).Length == 0)
                throw w.Refuse("it has no trip count M; a loop its condition alone ends (a while loop) is not unrolled");
            if (StaticValues.Of(w.Input(0), scope)?.Scalar is not { } m || m < 0)
                throw w.Refuse($"its trip count '{w.Input(0)}' is not a count fixed when the model loads (from constants, or from axes the inputs declare); only such loops are unrolled");
            long? start = w.Input(1).Length == 0 ? 1 : StaticValues.Of(w.Input(1), scope)?.Scalar;
            if (start is null)
                throw w.Refuse($"its condition '{w.Input(1)}' is not fixed when the model loads; only loops of a fixed count are unrolled");

            var body = Body(node, w, "body");
            int carried = node.Input.Count - 2;
            if (carried < 0 || body.Input.Count != carried + 2 || body.Output.Count < carried + 1 || node.Output.Count > body.Output.Count - 1)
                throw w.Refuse($"its body takes {body.Input.Count} inputs and gives {body.Output.Count} outputs for {Math.Max(carried, 0)} loop-carried values and {node.Output.Count} outputs; ONNX's Loop body takes the iteration number, the condition and each carried value, and gives the condition, each carried value and each scan output");
            // Each iteration unrolled starts with the condition true (the first as checked above, the others as checked here).
            var condIn = new Dictionary<string, StaticValues.Known> { [body.Input[1].Name] = new([1], []) };
            if (StaticValues.Of(body.Output[0].Name, new GraphScope(body, scope, condIn))?.Scalar is not { } goOn || goOn == 0)
                throw w.Refuse($"its body computes the condition '{body.Output[0].Name}' that ends it (a while loop); only loops of a fixed count, whose body passes the condition on, are unrolled");

            long iterations = start == 0 ? 0 : m;
            int scans = body.Output.Count - 1 - carried;
            if (iterations == 0 && scans > 0)
                throw w.Refuse("it runs no iteration, and its scan outputs would have no shape the file fixes");
            CheckSize(node, body, iterations, written);

            var shared = Hoist(body, graph, node.Name, w);
            string yes = w.Op("Constant", [], FunctionWriter.Tensor("value", BoolScalar(true)));
            var state = node.Input.Skip(2).ToArray();
            var stacked = Enumerable.Range(0, scans).Select(_ => new List<string>()).ToArray();
            for (long k = 0; k < iterations; k++)
            {
                var outputs = Copy(body, [w.IntScalar(k), yes, .. state], $"{node.Name}/{k}", shared, w);
                state = outputs[1..(carried + 1)];
                for (int s = 0; s < scans; s++) stacked[s].Add(outputs[carried + 1 + s]);
            }
            for (int o = 0; o < carried; o++)
                if (w.Output(o).Length > 0) w.Into(w.Output(o), "Identity", [state[o]]);
            for (int s = 0; s < scans; s++)
                if (w.Output(carried + s).Length > 0) w.Stack(stacked[s], 0, w.Output(carried + s), opset);
        }

        private void Scan(NodeProto node, FunctionWriter w, GraphProto graph, GraphScope scope, int written)
        {
            if (opset < 9)
                throw w.Refuse($"Scan before opset 9 (with a batch axis and sequence_lens) is not served; the model imports opset {opset}");
            int inputs = (int)w.Int("num_scan_inputs", 0), carried = node.Input.Count - inputs;
            var body = Body(node, w, "body");
            int scans = body.Output.Count - carried;
            if (inputs < 1 || carried < 0 || body.Input.Count != node.Input.Count || scans < 0 || node.Output.Count > body.Output.Count)
                throw w.Refuse($"it has {node.Input.Count} inputs ({inputs} scanned) and {node.Output.Count} outputs, its body {body.Input.Count} inputs and {body.Output.Count} outputs; ONNX's Scan body takes each state and one element of each scanned input, and gives each state and each scan output's element");
            long[] inAxes = Ints(node, "scan_input_axes", inputs, w), inDirections = Ints(node, "scan_input_directions", inputs, w);
            long[] outAxes = Ints(node, "scan_output_axes", scans, w), outDirections = Ints(node, "scan_output_directions", scans, w);

            long? length = null;
            for (int i = 0; i < inputs; i++)
            {
                string x = node.Input[carried + i];
                var declared = scope.DeclaredShape(x);
                long axis = inAxes[i] < 0 && declared is not null ? inAxes[i] + declared.Length : inAxes[i];
                if (declared is null || axis < 0 || axis >= declared.Length || declared[axis] is not { } n) continue;
                if (length is { } l && l != n)
                    throw w.Refuse($"its scanned inputs declare lengths {l} and {n} ('{x}' along axis {axis}); they must agree");
                inAxes[i] = axis;
                length = n;
            }
            if (length is not { } steps || steps == 0)
                throw w.Refuse(length == 0
                    ? "its scanned inputs are empty along their scan axes"
                    : $"the length of its scanned inputs along their scan axes is not declared; declare a fixed size for the axis (e.g. value_info from onnx.shape_inference) so the scan can be unrolled");
            if (inAxes.Any(a => a < 0))
                throw w.Refuse("a negative scan_input_axes needs its input's rank declared");
            CheckSize(node, body, steps, written);
            var shared = Hoist(body, graph, node.Name, w);
            var state = node.Input.Take(carried).ToArray();
            var stacked = Enumerable.Range(0, scans).Select(_ => new List<string>()).ToArray();
            for (long t = 0; t < steps; t++)
            {
                var elements = Enumerable.Range(0, inputs).Select(i => w.Op("Gather",
                    [node.Input[carried + i], w.IntScalar(inDirections[i] == 0 ? t : steps - 1 - t)], FunctionWriter.Attr("axis", inAxes[i])));
                var outputs = Copy(body, [.. state, .. elements], $"{node.Name}/{t}", shared, w);
                state = outputs[..carried];
                for (int s = 0; s < scans; s++) stacked[s].Add(outputs[carried + s]);
            }
            for (int o = 0; o < carried; o++)
                if (w.Output(o).Length > 0) w.Into(w.Output(o), "Identity", [state[o]]);
            for (int s = 0; s < scans; s++)
            {
                if (w.Output(carried + s).Length == 0) continue;
                if (outDirections[s] != 0) stacked[s].Reverse();
                w.Stack(stacked[s], outAxes[s], w.Output(carried + s), opset);
            }
        }

        private static GraphProto Body(NodeProto node, FunctionWriter w, string attribute) =>
            node.Attribute.FirstOrDefault(a => a.Name == attribute)?.G ?? throw w.Refuse($"it has no '{attribute}' graph");

        private static long[] Ints(NodeProto node, string attribute, int count, FunctionWriter w)
        {
            if (node.Attribute.FirstOrDefault(a => a.Name == attribute) is not { } a) return new long[count];
            if (a.Ints.Count != count) throw w.Refuse($"{attribute} has {a.Ints.Count} entries for {count} values");
            if (attribute.EndsWith("directions") && a.Ints.Any(d => d is not (0 or 1)))
                throw w.Refuse($"{attribute} holds [{string.Join(", ", a.Ints)}]; a direction is 0 (forward) or 1 (reverse)");
            return a.Ints.ToArray();
        }

        /// <summary>Refuses an unrolling over the node or byte limits before anything is copied.</summary>
        private void CheckSize(NodeProto node, GraphProto body, long iterations, int written)
        {
            // Per iteration: the body's nodes, its iteration number or element gathers, and the outputs' unsqueezes.
            // Divided, not multiplied: a count near 2^63 times the body would overflow into a small number and pass.
            long perIteration = body.Node.Count + body.Input.Count + body.Output.Count, bytes = Math.Max(1, body.CalculateSize());
            if (iterations > (limits.MaxNodes - written) / perIteration)
                throw new ModelLoadException($"node '{node.Name}' ({node.OpType}): {iterations:N0} iterations of a {body.Node.Count:N0}-node body would unroll to over Limits:MaxNodes {limits.MaxNodes:N0} nodes");
            if (iterations > limits.MaxFileBytes / bytes)
                throw new ModelLoadException($"node '{node.Name}' ({node.OpType}): {iterations:N0} iterations of a {bytes:N0}-byte body would unroll to over Limits:MaxModelFileMiB ({limits.MaxFileBytes:N0} bytes)");
        }

        /// <summary>
        /// The body's initializers and constants, given fresh names in the enclosing graph once rather than copied per
        /// iteration (a weight inside a body would otherwise be held once per step).
        /// </summary>
        private Dictionary<string, string> Hoist(GraphProto body, GraphProto graph, string under, FunctionWriter w)
        {
            var shared = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var t in body.Initializer)
            {
                var moved = t.Clone();
                moved.Name = Fresh($"{under}/{t.Name}");
                graph.Initializer.Add(moved);
                shared[t.Name] = moved.Name;
            }
            foreach (var c in body.Node.Where(n => n.OpType == "Constant" && n.Input.Count == 0 && n.Output.Count == 1))
                shared[c.Output[0]] = w.Op("Constant", [], [.. c.Attribute]);
            return shared;
        }

        /// <summary>
        /// One copy of <paramref name="body"/> fed <paramref name="inputs"/>; its outputs' names in the enclosing graph.
        /// Control flow inside the body is copied as it is, its bodies reading the copy's names, for the next pass.
        /// </summary>
        private string[] Copy(GraphProto body, string[] inputs, string under, Dictionary<string, string> shared, FunctionWriter w)
        {
            var names = new Dictionary<string, string>(shared, StringComparer.Ordinal);
            for (int i = 0; i < inputs.Length; i++) names[body.Input[i].Name] = inputs[i];
            foreach (var node in body.Node)
            {
                if (node.OpType == "Constant" && node.Output.Count == 1 && shared.ContainsKey(node.Output[0])) continue;
                var copy = node.Clone();
                copy.Name = $"{under}/{(node.Name.Length > 0 ? node.Name : node.OpType)}";
                Rename(copy, names);
                for (int o = 0; o < copy.Output.Count; o++)
                    if (copy.Output[o].Length > 0) copy.Output[o] = names[node.Output[o]] = Fresh($"{under}/{node.Output[o]}");
                w.Add(copy);
            }
            return body.Output.Select(o => names.GetValueOrDefault(o.Name, o.Name)).ToArray();
        }

        /// <summary>
        /// Points a copied node's inputs, and whatever its bodies read from outside themselves, at the copy's names. Names are
        /// unique across scopes (ONNX forbids a body to redefine an outer name), so every use of a renamed name is one.
        /// </summary>
        private static void Rename(NodeProto node, Dictionary<string, string> names)
        {
            for (int i = 0; i < node.Input.Count; i++)
                if (names.TryGetValue(node.Input[i], out var renamed)) node.Input[i] = renamed;
            foreach (var a in node.Attribute)
                foreach (var g in a.Graphs.Prepend(a.G).OfType<GraphProto>())
                {
                    foreach (var inner in g.Node) Rename(inner, names);
                    foreach (var o in g.Output)
                        if (names.TryGetValue(o.Name, out var renamed)) o.Name = renamed;
                }
        }

        private static TensorProto BoolScalar(bool value)
        {
            var t = new TensorProto { DataType = (int)ElementType.Bool };
            t.Int32Data.Add(value ? 1 : 0);
            return t;
        }
    }
}
