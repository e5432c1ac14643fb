using JacService.Core.Derivatives;
using JacService.Core.Onnx.Proto;
using JacService.Core.Ops;

namespace JacService.Core.Compiled;

/// <summary>
/// Writes a model's Jacobian as one ONNX graph: the model's own nodes as its file has them, then the derivative nodes
/// of every node between wrt and of (each op's <see cref="OpRule.Compiled"/> rule), in forward mode (a tangent basis of
/// wrt's elements pushed through) or reverse mode (a cotangent basis of of's elements pulled back), and per output in of
/// a graph output "jacobian:NAME" of shape [B, M, N] (M the output's elements per sample, N wrt's). A Vjp graph instead
/// takes the caller's T cotangents per output as graph inputs "cotangent:NAME" [B, T, ..out] and pulls them back to one
/// output "vjp:WRT" [B, T, ..wrt]; a Jvp graph takes the caller's T tangents as a graph input "tangent:WRT" [B, T, ..wrt]
/// and pushes them to one output "jvp:NAME" [B, T, ..out] per output in of. ONNX Runtime then runs the whole derivative as one call, without a crossing into .NET
/// per op.
/// </summary>
internal static class DerivativeGraphWriter
{
    public const string JacobianPrefix = "jacobian:";
    public const string CotangentPrefix = "cotangent:";
    public const string VjpPrefix = "vjp:";
    public const string TangentPrefix = "tangent:";
    public const string JvpPrefix = "jvp:";

    /// <summary>
    /// Where a graph stands in a second derivative, which differentiates a derivative graph again: the first derivative's
    /// graph (<see cref="Inner"/>) is written in plain ONNX, which the engine reads back and plans; the second
    /// (<see cref="Outer"/>) is written over it under a namespace of its own, its seed full-size along the batch: its
    /// rules take every value's first axis for the batch, which the inner graph's directions [K, B, ..] break.
    /// </summary>
    public enum Nesting { None, Inner, Outer }

    /// <summary>What a written graph computes: the shapes its outputs are read back with, and its working memory per sample.</summary>
    public sealed record Written(ModelProto Model, long[] WrtSample, long[][] OfSamples, long BytesPerSample);

    /// <param name="shapeOf">A value's shape for a batch of <paramref name="shapesBatch"/> (two or more), by name, or null where not known.</param>
    /// <param name="directions">
    /// For a Jvp graph (forward mode) the caller's tangents per sample, for a Vjp graph (reverse mode) its cotangents per
    /// sample (T); null for a Jacobian.
    /// </param>
    /// <param name="foldedInts">The int64 values a plan folds that no batch size changes (computed Slice bounds), by name, or null.</param>
    /// <param name="batchAxes">A value's axes whose length follows the batch, by name, or null where not known.</param>
    public static Written Write(ModelProto model, Func<string, long[]?> shapeOf, Func<string, long[]?> foldedInts, Func<string, long[]?> batchAxes,
        long shapesBatch, string wrt, string[] of, DerivativeMode mode, int maxNodes, long maxBytesPerSample,
        long? directions = null, Nesting nesting = Nesting.None)
    {
        long opset = Onnx.OnnxModelReader.DefaultOpset(model);
        if (opset < 13) throw new NotCompilableException($"the model's opset is {opset}; derivative graphs are written for opset 13 or later");
        var graph = model.Graph;
        string prefix = nesting == Nesting.Outer ? "jac2/" : OnnxEmitter.DefaultPrefix;
        if (graph.Node.Any(n => n.Output.Any(o => o.StartsWith(prefix, StringComparison.Ordinal))))
            throw new NotCompilableException($"the model names values under '{prefix}', which derivative graphs use");

        var dependent = new HashSet<string>(StringComparer.Ordinal) { wrt };
        var produced = new HashSet<string>(graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name)), StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.Input.Any(i => i.Length > 0 && !produced.Contains(i)))
                throw new NotCompilableException($"node '{node.Name}' ({node.OpType}) comes before a node it reads; the file's nodes are not in order");
            produced.UnionWith(node.Output);
            if (!string.IsNullOrEmpty(node.Domain) || !OpTable.Rules.TryGetValue(node.OpType, out var rule) || rule.Kind == OpKind.Constant) continue;
            if (node.Input.Any(dependent.Contains)) dependent.UnionWith(node.Output.Where(o => o.Length > 0));
        }
        var feeds = new HashSet<string>(of, StringComparer.Ordinal);
        var carrying = new List<NodeProto>();
        foreach (var node in graph.Node.Reverse())
        {
            if (!node.Output.Any(feeds.Contains)) continue;
            feeds.UnionWith(node.Input.Where(i => i.Length > 0));
            // A node that reads a dependent value but makes none (Shape) carries no derivative.
            if (node.Output.Any(dependent.Contains)) carrying.Add(node);
        }
        carrying.Reverse();

        shapeOf = WithKeptShapes(graph, shapeOf);
        var emit = new OnnxEmitter(graph, opset, shapeOf, foldedInts, batchAxes, prefix, readBack: nesting == Nesting.Inner);
        var wrtSample = emit.Shape(wrt)[1..];
        var ofSamples = of.Select(o => emit.Shape(o)[1..]).ToArray();
        long n = Shapes.Product(wrtSample);
        var m = ofSamples.Select(Shapes.Product).ToArray();
        long basis = directions ?? (mode == DerivativeMode.Forward ? n : m.Sum());
        if (basis == 0 || n == 0) throw new NotCompilableException("the derivative has no elements");

        // Every direction of every value the derivative nodes make, per sample: what a run holds at most. Counted before
        // anything is written: a Jacobian's identity seed alone is basis² floats (a reverse pass over 12,320 outputs per
        // sample would write 600 MB into the graph, and ONNX Runtime spend seconds reading it back).
        long perSample = Sizes.Times(Sizes.Times(carrying.SelectMany(node => node.Output).Where(o => o.Length > 0)
            .Sum(o => shapeOf(o) is { } s ? Sizes.Elements(s) / shapesBatch : 0), basis), sizeof(float));
        long result = directions is { } k ? Sizes.Times(k, mode == DerivativeMode.Forward ? m.Sum() : n) : Sizes.Times(m.Sum(), n);
        long seed = directions is null ? Sizes.Times(Sizes.Times(basis, mode == DerivativeMode.Forward ? n : m.Sum()), sizeof(float)) : 0;
        long bytes = Sizes.Plus(Sizes.Plus(perSample, Sizes.Times(result, sizeof(float))), seed);
        if (bytes > maxBytesPerSample)
            throw new NotCompilableException($"the derivative graph would hold {bytes:N0} bytes for one sample ({seed:N0} of them its identity seed), " +
                                             $"over Engine:WorkingMemoryMiB ({maxBytesPerSample:N0} bytes)");

        foreach (var node in carrying) CheckDifferentiable(node, dependent);
        if (directions is { } t && mode == DerivativeMode.Forward)
        {
            WriteJvp(emit, carrying, wrt, of, t);
            graph.Input.Add(OnnxEmitter.FloatValue(TangentPrefix + wrt));
            foreach (var o in of) graph.Output.Add(OnnxEmitter.FloatValue(JvpPrefix + o));
        }
        else if (directions is { } d)
        {
            WriteVjp(emit, carrying, dependent, wrt, of, d);
            foreach (var o in of) graph.Input.Add(OnnxEmitter.FloatValue(CotangentPrefix + o));
            graph.Output.Add(OnnxEmitter.FloatValue(VjpPrefix + wrt));
        }
        else
        {
            if (mode == DerivativeMode.Forward) WriteForward(emit, carrying, wrt, of, wrtSample, m, fullSeed: nesting == Nesting.Outer);
            else WriteReverse(emit, carrying, dependent, wrt, of, wrtSample, ofSamples, m);
            // Declared with their shapes: a graph read back as a model (Nesting.Inner) must declare its outputs'.
            for (int j = 0; j < of.Length; j++) graph.Output.Add(OnnxEmitter.FloatValue(JacobianPrefix + of[j], [-1, m[j], n]));
        }
        if (graph.Node.Count > maxNodes)
            throw new NotCompilableException($"the derivative graph holds {graph.Node.Count:N0} nodes, over Engine:MaxCompiledNodes {maxNodes:N0} (ONNX Runtime's preparation grows with the square of the graph: 4 s at 5,000 nodes, 18 s at 10,000)");
        if (emit.UsesRuntimeOps && !model.OpsetImport.Any(o => o.Domain == OnnxEmitter.RuntimeDomain))
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = OnnxEmitter.RuntimeDomain, Version = 1 });
        return new Written(model, wrtSample, ofSamples, Sizes.Plus(perSample, Sizes.Times(result, sizeof(float))));
    }

    private static void WriteForward(OnnxEmitter emit, List<NodeProto> carrying, string wrt, string[] of, long[] wrtSample, long[] m, bool fullSeed)
    {
        long n = Shapes.Product(wrtSample);
        var seed = emit.Identity(n, [n, 1, .. wrtSample]);
        var tangents = Push(emit, carrying, wrt, fullSeed ? emit.Full(seed, n, wrt) : seed, n);
        for (int j = 0; j < of.Length; j++)
        {
            var rows = emit.Op("Reshape", emit.Full(Reached(emit, tangents, of[j]), n, of[j]), emit.Ints(n, -1, m[j]));
            Name(emit, emit.Op("Transpose", [rows], OnnxEmitter.IntList("perm", 1, 2, 0)), JacobianPrefix + of[j]);
        }
    }

    /// <summary>The caller's tangents [B, T, ..wrt] (a graph input), made [T, B, ..wrt] and pushed to each output in of as [B, T, ..out].</summary>
    private static void WriteJvp(OnnxEmitter emit, List<NodeProto> carrying, string wrt, string[] of, long directions)
    {
        var seed = emit.Op("Transpose", [TangentPrefix + wrt], OnnxEmitter.IntList("perm", LeadingSwapped(emit.Rank(wrt) + 1)));
        var tangents = Push(emit, carrying, wrt, seed, directions);
        foreach (var o in of)
        {
            var pushed = emit.Full(Reached(emit, tangents, o), directions, o);
            Name(emit, emit.Op("Transpose", [pushed], OnnxEmitter.IntList("perm", LeadingSwapped(emit.Rank(o) + 1))), JvpPrefix + o);
        }
    }

    /// <summary>Pushes <paramref name="seed"/>, wrt's tangents [K, ..], forward through the carrying nodes: every value's tangent by name.</summary>
    private static Dictionary<string, string> Push(OnnxEmitter emit, List<NodeProto> carrying, string wrt, string seed, long basis)
    {
        var tangents = new Dictionary<string, string>(StringComparer.Ordinal) { [wrt] = seed };
        foreach (var node in carrying)
        {
            var inputs = node.Input.Select(i => tangents.GetValueOrDefault(i)).ToArray();
            var outputs = Rule(node).Jvp(new OnnxRuleContext(node, emit, basis, inputs, [], []));
            for (int o = 0; o < outputs.Length && o < node.Output.Count; o++)
                if (outputs[o] is { } t) tangents[node.Output[o]] = t;
        }
        return tangents;
    }

    /// <summary>
    /// An output's tangent, or zero where none reached it: it does not depend on wrt, or only through ops whose rules
    /// give no tangent (a Jacobian graph of a piecewise-linear model, read back for its Hessian, is such an output).
    /// </summary>
    private static string Reached(OnnxEmitter emit, Dictionary<string, string> tangents, string output) =>
        tangents.GetValueOrDefault(output) ?? emit.Scalar(0);

    private static void WriteReverse(OnnxEmitter emit, List<NodeProto> carrying, HashSet<string> dependent, string wrt, string[] of,
        long[] wrtSample, long[][] ofSamples, long[] m)
    {
        long total = m.Sum(), n = Shapes.Product(wrtSample), offset = 0;
        var cotangents = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int j = 0; j < of.Length; j++)
        {
            var seed = new float[total * m[j]];
            for (long k = 0; k < m[j]; k++) seed[(offset + k) * m[j] + k] = 1;
            Accumulate(emit, cotangents, of[j], emit.Floats(seed, [total, 1, .. ofSamples[j]]));
            offset += m[j];
        }
        var pulled = Pull(emit, carrying, dependent, cotangents, wrt, total);
        var rows = emit.Op("Reshape", emit.Full(pulled, total, wrt), emit.Ints(total, -1, n));
        var jacobian = emit.Op("Transpose", [rows], OnnxEmitter.IntList("perm", 1, 0, 2));
        offset = 0;
        for (int j = 0; j < of.Length; j++)
        {
            Name(emit, of.Length == 1 ? jacobian : emit.Op("Slice", jacobian, emit.Ints(offset), emit.Ints(offset + m[j]), emit.Ints(1)), JacobianPrefix + of[j]);
            offset += m[j];
        }
    }

    /// <summary>The caller's cotangents [B, T, ..out] (graph inputs), made [T, B, ..out] and pulled back to wrt as [B, T, ..wrt].</summary>
    private static void WriteVjp(OnnxEmitter emit, List<NodeProto> carrying, HashSet<string> dependent, string wrt, string[] of, long directions)
    {
        var cotangents = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var o in of)
            Accumulate(emit, cotangents, o, emit.Op("Transpose", [CotangentPrefix + o], OnnxEmitter.IntList("perm", LeadingSwapped(emit.Rank(o) + 1))));
        var pulled = emit.Full(Pull(emit, carrying, dependent, cotangents, wrt, directions), directions, wrt);
        Name(emit, emit.Op("Transpose", [pulled], OnnxEmitter.IntList("perm", LeadingSwapped(emit.Rank(wrt) + 1))), VjpPrefix + wrt);
    }

    /// <summary>[1, 0, 2, 3, ...] of the given rank: the first two axes swapped.</summary>
    private static long[] LeadingSwapped(int rank) => [1, 0, .. Enumerable.Range(2, rank - 2).Select(a => (long)a)];

    /// <summary>Pulls the seeded cotangents back through the carrying nodes, last first, and returns wrt's.</summary>
    private static string Pull(OnnxEmitter emit, List<NodeProto> carrying, HashSet<string> dependent, Dictionary<string, string> cotangents,
        string wrt, long basis)
    {
        for (int s = carrying.Count - 1; s >= 0; s--)
        {
            var node = carrying[s];
            var outputs = node.Output.Select(o => cotangents.GetValueOrDefault(o)).ToArray();
            if (outputs.All(ct => ct is null)) continue;
            var needs = node.Input.Select(dependent.Contains).ToArray();
            var inputs = Rule(node).Vjp(new OnnxRuleContext(node, emit, basis, [], outputs, needs));
            for (int i = 0; i < inputs.Length && i < node.Input.Count; i++)
                if (inputs[i] is { } ct && needs[i]) Accumulate(emit, cotangents, node.Input[i], ct);
        }
        // None reaches wrt where no output in of depends on it: zero, as a tangent that reaches no output.
        return cotangents.GetValueOrDefault(wrt) ?? emit.Scalar(0);
    }

    private static void Accumulate(OnnxEmitter emit, Dictionary<string, string> cotangents, string value, string cotangent) =>
        cotangents[value] = cotangents.TryGetValue(value, out var sum) ? emit.Add(sum, cotangent) : cotangent;

    private static CompiledRule Rule(NodeProto node) =>
        OpTable.Rules[node.OpType].Compiled ?? throw new NotCompilableException($"{node.OpType} (node '{node.Name}') has no compiled derivative rule");

    /// <summary>
    /// Shapes by name, including those of the file's values a graph rewrite took out of the interpreter's graph, which
    /// has no plan for them: initializers the rewrite replaced (a Conv's weights, folded with a BatchNormalization) have
    /// their dims, and the values it removed (that Conv's output, a Relu's output moved after a MaxPool) are each the
    /// input or the output of an op that keeps its input's shape, and take the shape of the other side.
    /// </summary>
    private static Func<string, long[]?> WithKeptShapes(GraphProto graph, Func<string, long[]?> shapeOf)
    {
        var kept = graph.Initializer.GroupBy(t => t.Name).ToDictionary(g => g.Key, g => g.First().Dims.ToArray(), StringComparer.Ordinal);
        long[]? Known(string value) => shapeOf(value) ?? kept.GetValueOrDefault(value);
        var keeping = graph.Node.Where(n => n.Input.Count > 0 && n.Output.Count > 0 && string.IsNullOrEmpty(n.Domain)
            && OpTable.Rules.TryGetValue(n.OpType, out var rule) && rule.Kind is OpKind.ElementwiseUnary or OpKind.Normalization).ToList();
        foreach (var node in keeping)
            if (Known(node.Output[0]) is null && Known(node.Input[0]) is { } shape) kept[node.Output[0]] = shape;
        foreach (var node in Enumerable.Reverse(keeping))
            if (Known(node.Input[0]) is null && Known(node.Output[0]) is { } shape) kept[node.Input[0]] = shape;
        return Known;
    }

    private static void CheckDifferentiable(NodeProto node, HashSet<string> dependent)
    {
        foreach (var i in OpTable.Rules[node.OpType].NonDifferentiableInputs.Where(i => i < node.Input.Count && dependent.Contains(node.Input[i])))
            throw new NotCompilableException($"{node.OpType} (node '{node.Name}') takes its input {i} from wrt, which it does not differentiate");
    }

    private static void Name(OnnxEmitter emit, string value, string name)
    {
        var node = new NodeProto { OpType = "Identity", Name = name };
        node.Input.Add(value);
        node.Output.Add(name);
        emit.Append(node);
    }
}
