using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace JacService.Core.Models;

/// <summary>
/// A model version's float weights (those its products and convolutions read: <see cref="WeightInputs"/>), held once
/// in native memory for all of its ONNX Runtime sessions (Predict and every derivative graph), with one container for
/// the packed copies ONNX Runtime makes of them for its matrix products. Each session would otherwise deserialise and
/// pack its own: ~70 MB per derivative graph of a 36 MB model.
/// Must outlive every session it was given to.
/// </summary>
internal sealed unsafe class SharedWeights : IDisposable
{
    private readonly List<(string Name, OrtValue Value)> _values = [];
    // The same tensors as native values, for the graphs that leave the weights' data out (LeaveOut).
    private readonly Dictionary<string, (long[] Dims, long Bytes, nint Value)> _external = new(StringComparer.Ordinal);
    private readonly List<nint> _buffers = [];

    private SharedWeights()
    {
    }

    /// <summary>Packed copies of the shared weights, made by the first session that needs one and reused by the rest.</summary>
    public PrePackedWeightsContainer Prepacked { get; } = new();

    /// <summary>Bytes of the weights the sessions share (the packed copies come on top).</summary>
    public long Bytes { get; private set; }

    /// <summary>Of <see cref="Bytes"/>, those held in a copy of this object's own rather than in the engine's tensors.</summary>
    public long CopiedBytes { get; private set; }

    /// <summary>
    /// The float initializers of <paramref name="model"/> (the file as parsed at load, left as it was) with embedded data; null where ONNX Runtime is
    /// not available (its sessions are then not made either). A weight the engine holds unchanged in a CPU float32
    /// tensor (<paramref name="held"/>, by name; one that a graph rewrite folded differs) is read from that tensor, which
    /// must outlive the sessions; the rest are copied.
    /// </summary>
    public static SharedWeights? TryFrom(ModelProto model, ModelLimits limits, Func<string, TorchSharp.torch.Tensor?>? held = null)
    {
        try
        {
            return From(model, limits, held ?? (_ => null));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            return null;
        }
    }

    private static SharedWeights From(ModelProto model, ModelLimits limits, Func<string, TorchSharp.torch.Tensor?> held)
    {
        // A clone shares the weights' bytes, which are never written to.
        var graph = OnnxModelReader.Expand(model.Clone(), limits).Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var rewritable = ReadOtherThanAsWeights(graph);
        var weights = new SharedWeights();
        try
        {
            foreach (var tensor in graph.Initializer.DistinctBy(t => t.Name))
            {
                // An initializer that is also a graph input can be fed by the caller: it stays each session's own.
                if (tensor.DataType != (int)TensorProto.Types.DataType.Float || inputs.Contains(tensor.Name) || tensor.ExternalData.Count > 0) continue;
                if (rewritable.Contains(tensor.Name)) continue;
                if (tensor.Dims.Any(d => d <= 0)) continue;
                long n = tensor.Dims.Aggregate(1L, (a, d) => a * d);
                // The reader checked these at load; a tensor whose data does not match its dims is left to each session to refuse.
                if (tensor.RawData.Length == n * sizeof(float)) weights.Add(tensor.Name, tensor.Dims.ToArray(), MemoryMarshal.Cast<byte, float>(tensor.RawData.Span), held(tensor.Name));
                else if (tensor.FloatData.Count == n) weights.Add(tensor.Name, tensor.Dims.ToArray(), tensor.FloatData.ToArray(), held(tensor.Name));
            }
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The inputs that ONNX Runtime reads as weights and never rewrites in place: a matrix product's, a convolution's and
    /// a recurrent layer's operands, and Gather's table (input 0); its optimizers fold or repack those into initializers
    /// of their own. The constants of the ops it pushes a Transpose through, it transposes where they are, and a copy
    /// added from outside (<see cref="SessionOptions.AddInitializer"/>) keeps its old shape. ConvNeXt's layer scale, a
    /// [96, 1, 1] constant that PyTorch's exporter gives three blocks' Muls (through Identity), became [1, 1, 96] in the
    /// graph and stayed [96, 1, 1] in the data: every Predict failed ("Attempting to broadcast an axis by a dimension
    /// other than 1. 56 by 96"), and a shape that happened to broadcast would have given wrong numbers instead.
    /// </summary>
    private static readonly Dictionary<string, int[]?> WeightInputs = new(StringComparer.Ordinal)
    {
        ["MatMul"] = null, ["Gemm"] = null, ["Conv"] = null, ["ConvTranspose"] = null,
        ["LSTM"] = null, ["GRU"] = null, ["RNN"] = null, ["Gather"] = [0],
    };

    /// <summary>Names that some node, in the graph or a subgraph, reads other than as a weight (<see cref="WeightInputs"/>).</summary>
    private static HashSet<string> ReadOtherThanAsWeights(GraphProto graph)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in Nodes(graph))
        {
            int[]? positions = null;
            bool reader = node.Domain is "" or "ai.onnx" && WeightInputs.TryGetValue(node.OpType, out positions);
            for (int i = 0; i < node.Input.Count; i++)
                if (!reader || positions is not null && !positions.Contains(i)) names.Add(node.Input[i]);
        }
        return names;
    }

    /// <summary>The nodes of the graph and of every subgraph in it.</summary>
    private static IEnumerable<NodeProto> Nodes(GraphProto graph)
    {
        var pending = new Stack<GraphProto>([graph]);
        while (pending.TryPop(out var g))
            foreach (var node in g.Node)
            {
                yield return node;
                foreach (var attribute in node.Attribute)
                {
                    if (attribute.G is { } body) pending.Push(body);
                    foreach (var inner in attribute.Graphs) pending.Push(inner);
                }
            }
    }

    private void Add(string name, long[] dims, ReadOnlySpan<float> data, TorchSharp.torch.Tensor? held)
    {
        long bytes = (long)data.Length * sizeof(float);
        Bytes += bytes;
        if (Same(held, dims, data) is not { } address)
        {
            CopiedBytes += bytes;
            address = Marshal.AllocHGlobal((nint)bytes);
            _buffers.Add(address);
            data.CopyTo(new Span<float>((void*)address, data.Length));
        }
        _values.Add((name, OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, dims, address, bytes)));
        _external[name] = (dims, bytes, OrtExternalInitializers.FloatTensor(address, bytes, dims));
    }

    /// <summary>The address of <paramref name="held"/>'s data where it is a CPU float32 tensor of these dims and values; else null.</summary>
    internal static unsafe nint? Same(TorchSharp.torch.Tensor? held, long[] dims, ReadOnlySpan<float> data)
    {
        if (held is null || held.dtype != TorchSharp.torch.ScalarType.Float32 || held.device_type != TorchSharp.DeviceType.CPU
            || !held.is_contiguous() || !held.shape.AsSpan().SequenceEqual(dims) || (long)data.Length * sizeof(float) > int.MaxValue)
            return null;
        var bytes = held.bytes;
        if (!bytes.SequenceEqual(MemoryMarshal.AsBytes(data))) return null;
        // Native memory, which the collector never moves: the address stays good as long as the tensor lives.
        fixed (byte* address = bytes) return (nint)address;
    }

    /// <summary>
    /// Takes the data of the shared weights out of <paramref name="model"/>'s main graph, which then names it as external,
    /// and returns what a session of the graph must be given for them (<see cref="AddTo"/>). A weight that no node reads
    /// (<see cref="ReadFromScope"/>) keeps its data: ONNX Runtime drops such an initializer before it would take the
    /// replacement, and then refuses it.
    /// </summary>
    public IReadOnlyList<(string Name, nint Value)> LeaveOut(ModelProto model)
    {
        var graph = model.Graph;
        var read = ReadFromScope(graph);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var left = new List<(string, nint)>();
        foreach (var group in graph.Initializer.GroupBy(t => t.Name))
        {
            if (group.Count() > 1 || !_external.TryGetValue(group.Key, out var shared) || !read.Contains(group.Key) || outputs.Contains(group.Key)) continue;
            var tensor = group.Single();
            if (tensor.DataType != (int)TensorProto.Types.DataType.Float || !tensor.Dims.SequenceEqual(shared.Dims) || tensor.ExternalData.Count > 0) continue;
            tensor.RawData = ByteString.Empty;
            tensor.FloatData.Clear();
            tensor.DataLocation = TensorProto.Types.DataLocation.External;
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = OrtExternalInitializers.Location });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "0" });
            tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = shared.Bytes.ToString(CultureInfo.InvariantCulture) });
            left.Add((group.Key, shared.Value));
        }
        return left;
    }

    /// <summary>
    /// The names the graph's nodes read from its scope: their inputs, and what their subgraphs read without defining it,
    /// as ONNX Runtime counts an initializer used (a subgraph's own initializer of the same name hides the graph's).
    /// </summary>
    private static HashSet<string> ReadFromScope(GraphProto graph)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            names.UnionWith(node.Input);
            foreach (var attribute in node.Attribute)
                foreach (var body in attribute.G is { } g ? attribute.Graphs.Prepend(g) : attribute.Graphs)
                {
                    var defined = body.Initializer.Select(t => t.Name).Concat(body.Input.Select(i => i.Name))
                        .Concat(body.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
                    names.UnionWith(ReadFromScope(body).Where(name => !defined.Contains(name)));
                }
        }
        return names;
    }

    /// <summary>
    /// Hands every shared weight to a session about to be created with <paramref name="options"/>, and the data of those
    /// its graph left out (<paramref name="leftOut"/>, from <see cref="LeaveOut"/>).
    /// </summary>
    public void AddTo(SessionOptions options, IReadOnlyList<(string Name, nint Value)> leftOut)
    {
        foreach (var (name, value) in _values) options.AddInitializer(name, value);
        if (leftOut.Count == 0) return;
        // Read where they are, as the shared weights are: the buffers outlive every session, as this object must.
        options.AddSessionConfigEntry(OrtExternalInitializers.BorrowBuffersConfig, "1");
        OrtExternalInitializers.Add(options, leftOut);
    }

    public void Dispose()
    {
        foreach (var (_, value) in _values) value.Dispose();
        foreach (var (_, _, value) in _external.Values) OrtExternalInitializers.Release(value);
        _external.Clear();
        foreach (var buffer in _buffers) Marshal.FreeHGlobal(buffer);
        _values.Clear();
        _buffers.Clear();
        Prepacked.Dispose();
    }
}
