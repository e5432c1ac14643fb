using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Ops;
using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Onnx;

/// <summary>
/// Parses model.onnx bytes and validates everything the engine relies on, so that a bad file fails here with
/// a message naming the cause, never later at request time.
/// </summary>
public static class OnnxModelReader
{
    public const int MinOpset = 13;

    /// <summary>
    /// The newest opset whose ops this reader knows (ONNX Runtime 1.31 refused 27; 1.32, which serves Predict and the compiled
    /// derivative graphs now, loads it).
    /// From 18 to 26 the table's ops changed meaning only in the reductions' axes (an input from 18), Split's num_outputs
    /// (18), Pad's axes input (18) and wrap mode (19), AveragePool's dilations (19) and Gelu's arrival (20); every other
    /// change added element types (float8, int4, float4), which the reader refuses where they would arrive.
    /// </summary>
    public const int MaxOpset = 26;

    /// <summary>Ops the reader replaces by others at load (control flow unrolled, sequences resolved, standard functions expanded): no op-table row.</summary>
    internal static IReadOnlyCollection<string> ExpandedOps { get; } = [.. ControlFlow.Ops, .. SequenceFolding.Ops, .. StandardFunctions.Ops];

    /// <summary>Parses, checks against <paramref name="limits"/> and validates a model, then moves its initializers to the device.</summary>
    public static ModelGraph Read(byte[] bytes, torch.ScalarType computeType, ModelLimits limits) =>
        ReadExpanded(Parse(bytes, limits), computeType, limits);

    /// <summary>
    /// The file's model as <see cref="ParseAsWritten"/> gave it (its size checked then), read as
    /// <see cref="Read(byte[], torch.ScalarType, ModelLimits)"/> reads the bytes: a version parses its file once for all
    /// that read it at load. <paramref name="parsed"/> is left as it was. A float weight whose data is the memory of the
    /// tensor <paramref name="held"/> gives for its name (an engine weight that KeptModel wrapped into a derivative graph)
    /// is held as an alias of that tensor, not read into a copy: 0.8 s and 200 MB for a 200 MB model's Hessian graph.
    /// </summary>
    internal static ModelGraph ReadParsed(ModelProto parsed, torch.ScalarType computeType, ModelLimits limits, Func<string, torch.Tensor?>? held = null) =>
        // A clone shares the weights' bytes, which are never written to.
        ReadExpanded(Expand(parsed.Clone(), limits), computeType, limits, held);

    /// <summary>
    /// A model written here (a Jacobian's graph, to be differentiated again) read as <see cref="ReadParsed"/> reads a
    /// file's, after the same size check, without writing and parsing it: 1.5 s for a 200 MB model's graph.
    /// </summary>
    internal static ModelGraph ReadWritten(ModelProto written, torch.ScalarType computeType, ModelLimits limits, Func<string, torch.Tensor?>? held = null)
    {
        CheckFileSize(written.CalculateSize(), limits);
        return ReadParsed(written, computeType, limits, held);
    }

    private static void CheckFileSize(long bytes, ModelLimits limits)
    {
        if (bytes > limits.MaxFileBytes)
            throw new ModelLoadException($"the model has {bytes:N0} bytes, over Limits:MaxModelFileMiB ({limits.MaxFileBytes:N0} bytes)");
    }

    private static ModelGraph ReadExpanded(ModelProto model, torch.ScalarType computeType, ModelLimits limits, Func<string, torch.Tensor?>? held = null)
    {
        ModelSizeChecks.Check(model, computeType, limits);
        return Read(model, computeType, limits, held);
    }

    /// <summary>
    /// The file's model as the reader sees it (what it validated: control flow unrolled, model-local functions inlined, sequences resolved, standard functions expanded),
    /// e.g. to write derivative graphs from.
    /// </summary>
    internal static ModelProto Parse(byte[] bytes, ModelLimits limits) => Expand(ParseAsWritten(bytes, limits), limits);

    /// <summary>The file's protobuf as it is written, before <see cref="Expand"/>.</summary>
    internal static ModelProto ParseAsWritten(byte[] bytes, ModelLimits limits) =>
        // Fields this subset of onnx.proto does not know are dropped rather than kept as unknown fields.
        ParseWith(ModelProto.Parser.WithDiscardUnknownFields(true), bytes, limits);

    /// <summary>The file's protobuf with the fields this subset of onnx.proto does not know kept: it writes back as the file was.</summary>
    internal static ModelProto ParseWhole(byte[] bytes, ModelLimits limits) => ParseWith(ModelProto.Parser, bytes, limits);

    private static ModelProto ParseWith(MessageParser<ModelProto> parser, byte[] bytes, ModelLimits limits)
    {
        // Before the parse allocates what the file holds.
        CheckFileSize(bytes.Length, limits);
        // Subgraphs (If, Loop bodies) nest messages without end, and the parser recurses per level: cap the depth.
        using var input = CodedInputStream.CreateWithLimits(new MemoryStream(bytes, writable: false), int.MaxValue, limits.MaxNestingDepth);
        try
        {
            return parser.ParseFrom(input);
        }
        catch (InvalidProtocolBufferException e) when (e.Message.Contains("levels of nesting", StringComparison.Ordinal))
        {
            throw new ModelLoadException($"the model nests protobuf messages deeper than Limits:MaxNestingDepth {limits.MaxNestingDepth}", e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelLoadException($"not an ONNX model (protobuf parse failed: {e.Message})", e);
        }
    }

    /// <summary>Control flow unrolled, model-local functions inlined, sequences resolved, standard functions expanded.</summary>
    internal static ModelProto Expand(ModelProto model, ModelLimits limits)
    {
        // Control flow first so that function calls inside loop bodies are inlined, and again for loops inside functions.
        ControlFlow.Expand(model, limits);
        FunctionInliner.Inline(model, limits);
        ControlFlow.Expand(model, limits);
        SequenceFolding.Fold(model, limits);
        StandardFunctions.Expand(model, limits);
        return model;
    }

    private static ModelGraph Read(ModelProto model, torch.ScalarType computeType, ModelLimits limits, Func<string, torch.Tensor?>? held)
    {
        var graph = model.Graph ?? throw new ModelLoadException("not an ONNX model: the file holds no graph");
        if (graph.Node.Count == 0) throw new ModelLoadException("the graph has no nodes");
        int opset = ReadOpset(model);

        var initializerNames = graph.Initializer.Select(i => i.Name).ToHashSet();
        var inputs = graph.Input.Where(i => !initializerNames.Contains(i.Name)).Select(v => Signature(v, "input")).ToList();
        var outputs = graph.Output.Select(v => Signature(v, "output")).ToList();
        if (inputs.Count == 0) throw new ModelLoadException("the graph has no inputs");
        if (outputs.Count == 0) throw new ModelLoadException("the graph has no outputs");
        foreach (var input in inputs.Where(i => i.Shape.Length == 0))
            throw new ModelLoadException($"input '{input.Name}' is a scalar; every input needs a leading batch axis");

        var unsupported = graph.Node
            .Where(n => !(n.Domain is "" or "ai.onnx") || !OpTable.Rules.ContainsKey(n.OpType))
            .Select(n => $"{(n.Domain is "" or "ai.onnx" ? "" : n.Domain + ".")}{n.OpType} (node '{n.Name}')")
            .Distinct().ToList();
        if (unsupported.Count > 0)
            throw new ModelLoadException($"unsupported op{(unsupported.Count > 1 ? "s" : "")}: {string.Join(", ", unsupported)}");

        // Value ids: graph inputs, initializers, then node outputs in file order.
        var ids = new Dictionary<string, int>();
        var names = new List<string>();
        int Define(string name, string what)
        {
            if (ids.ContainsKey(name)) throw new ModelLoadException($"{what} '{name}' is defined more than once");
            ids[name] = names.Count;
            names.Add(name);
            return names.Count - 1;
        }
        foreach (var i in inputs) Define(i.Name, "input");
        foreach (var name in graph.Initializer.Select(i => i.Name)) Define(name, "initializer");
        foreach (var node in graph.Node)
            foreach (var o in node.Output.Where(o => o.Length > 0)) Define(o, $"output of node '{node.Name}'");

        var producerNode = new int[names.Count];
        Array.Fill(producerNode, -1);
        for (int n = 0; n < graph.Node.Count; n++)
            foreach (var o in graph.Node[n].Output.Where(o => o.Length > 0)) producerNode[ids[o]] = n;

        foreach (var node in graph.Node)
            foreach (var i in node.Input.Where(i => i.Length > 0 && !ids.ContainsKey(i)))
                throw new ModelLoadException(
                    $"node '{node.Name}' ({node.OpType}) consumes '{i}', which no node, initializer or graph input produces");
        foreach (var o in outputs.Where(o => !ids.ContainsKey(o.Name)))
            throw new ModelLoadException($"graph output '{o.Name}' is not produced by any node");

        var order = TopologicalOrder(graph, ids, producerNode);
        CheckDepth(graph, order, ids, producerNode, limits);
        var nodes = new GraphNode[order.Count];
        for (int k = 0; k < order.Count; k++)
        {
            var p = graph.Node[order[k]];
            nodes[k] = new GraphNode
            {
                Index = k,
                Name = string.IsNullOrEmpty(p.Name) ? $"{p.OpType}_{order[k]}" : p.Name,
                OpType = p.OpType,
                Attributes = new NodeAttributes(p.Attribute),
                Inputs = p.Input.Select(i => i.Length == 0 ? -1 : ids[i]).ToArray(),
                Outputs = p.Output.Select(o => o.Length == 0 ? -1 : ids[o]).ToArray(),
            };
            var rule = OpTable.Rules[p.OpType];
            if (FlagAttributes.Check(p) is { } flag) throw new ModelLoadException($"{nodes[k]}: {flag}");
            if (opset < rule.Since)
                throw new ModelLoadException($"{nodes[k]}: {p.OpType} is defined from opset {rule.Since}; the model imports opset {opset}");
            if (rule.Validate(nodes[k], opset) is { } problem)
                throw new ModelLoadException($"{nodes[k]}: {problem}");
        }

        var initializers = new Dictionary<int, torch.Tensor>();
        try
        {
            foreach (var init in graph.Initializer)
                initializers[ids[init.Name]] = AliasOfHeld(init, computeType, held) ?? TensorProtoReader.ToTensor(init, computeType);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            foreach (var t in initializers.Values) t.Dispose();
            throw new ModelLoadException($"initializer: {e.Message}", e);
        }

        return new ModelGraph
        {
            Inputs = inputs,
            Outputs = outputs,
            Opset = opset,
            ComputeType = computeType,
            ValueNames = names.ToArray(),
            InputIds = inputs.Select(i => ids[i.Name]).ToArray(),
            OutputIds = outputs.Select(o => ids[o.Name]).ToArray(),
            Nodes = nodes,
            Initializers = initializers,
            Structure = ModelStructure.Key(model),
        };
    }

    /// <summary>An alias of the tensor whose memory <paramref name="init"/>'s data is, or null where it has data of its own.</summary>
    private static torch.Tensor? AliasOfHeld(TensorProto init, torch.ScalarType computeType, Func<string, torch.Tensor?>? held)
    {
        if (held?.Invoke(init.Name) is not { } tensor || computeType != torch.ScalarType.Float32 || tensor.dtype != torch.ScalarType.Float32
            || init.DataType != (int)TensorProto.Types.DataType.Float || tensor.device_type != DeviceType.CPU || !tensor.is_contiguous()
            || !tensor.shape.AsSpan().SequenceEqual(init.Dims.ToArray()) || init.RawData.Length != tensor.NumberOfElements * sizeof(float))
            return null;
        return Unsafe.AreSame(ref MemoryMarshal.GetReference(tensor.bytes), ref MemoryMarshal.GetReference(init.RawData.Span)) ? tensor.alias() : null;
    }

    /// <summary>The default domain's opset a model imports, before it is checked; 0 where it imports none (refused later).</summary>
    internal static long DefaultOpset(ModelProto model) =>
        model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();

    private static int ReadOpset(ModelProto model)
    {
        var entry = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")
            ?? throw new ModelLoadException("the model imports no opset of the default ONNX domain");
        if (entry.Version < MinOpset || entry.Version > MaxOpset)
            throw new ModelLoadException(
                $"opset {entry.Version} is not supported; export with an opset from {MinOpset} to {MaxOpset}");
        return (int)entry.Version;
    }

    private static TensorSignature Signature(ValueInfoProto v, string what)
    {
        if (v.Type?.TensorType is not { } tensorType)
            throw new ModelLoadException($"graph {what} '{v.Name}' is not a tensor");
        if (!ElementTypes.TryFromOnnx(tensorType.ElemType, out var type))
            throw new ModelLoadException($"graph {what} '{v.Name}' has ONNX element type {tensorType.ElemType}, which is not supported");
        if (tensorType.Shape is null)
            throw new ModelLoadException($"graph {what} '{v.Name}' declares no shape; export with a shape (batch axis first)");
        var shape = tensorType.Shape.Dim
            .Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue > 0 ? d.DimValue : -1)
            .ToArray();
        return new TensorSignature(v.Name, type, shape);
    }

    /// <summary>Refuses a graph whose longest chain of nodes (each consuming one before it) is over the limit.</summary>
    private static void CheckDepth(GraphProto graph, List<int> order, Dictionary<string, int> ids, int[] producerNode, ModelLimits limits)
    {
        var depth = new int[graph.Node.Count];
        foreach (int n in order)
        {
            int deepest = 0;
            foreach (var input in graph.Node[n].Input)
                if (input.Length > 0 && producerNode[ids[input]] is var p and >= 0) deepest = Math.Max(deepest, depth[p]);
            depth[n] = deepest + 1;
            if (depth[n] > limits.MaxGraphDepth)
                throw new ModelLoadException(
                    $"the graph is {depth[n]:N0} nodes deep at node '{graph.Node[n].Name}' (its longest chain), over Limits:MaxGraphDepth {limits.MaxGraphDepth}");
        }
    }

    private static List<int> TopologicalOrder(GraphProto graph, Dictionary<string, int> ids, int[] producerNode)
    {
        int n = graph.Node.Count;
        var pending = new int[n];
        var consumers = new List<int>[n];
        for (int i = 0; i < n; i++) consumers[i] = [];
        for (int i = 0; i < n; i++)
            foreach (var input in graph.Node[i].Input.Where(x => x.Length > 0).Distinct())
            {
                int p = producerNode[ids[input]];
                if (p < 0) continue;
                if (p == i) throw new ModelLoadException($"node '{graph.Node[i].Name}' consumes its own output '{input}'");
                pending[i]++;
                consumers[p].Add(i);
            }

        // Kahn's algorithm, taking ready nodes in file order so the sort is stable.
        var ready = new PriorityQueue<int, int>();
        for (int i = 0; i < n; i++) if (pending[i] == 0) ready.Enqueue(i, i);
        var order = new List<int>(n);
        while (ready.TryDequeue(out int i, out _))
        {
            order.Add(i);
            foreach (var c in consumers[i]) if (--pending[c] == 0) ready.Enqueue(c, c);
        }
        if (order.Count != n)
        {
            var stuck = Enumerable.Range(0, n).Where(i => pending[i] > 0).Select(i => $"'{graph.Node[i].Name}'").Take(5);
            throw new ModelLoadException($"the graph has a cycle through nodes {string.Join(", ", stuck)}");
        }
        return order;
    }
}
