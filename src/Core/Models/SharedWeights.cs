using System.Runtime.InteropServices;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace JacService.Core.Models;

/// <summary>
/// A model version's float weights, held once in native memory for all of its ONNX Runtime sessions (Predict and
/// every derivative graph), with one container for the packed copies ONNX Runtime makes of them for its matrix
/// products. Each session would otherwise deserialise and pack its own: ~70 MB per derivative graph of a 36 MB model.
/// Must outlive every session it was given to.
/// </summary>
internal sealed class SharedWeights : IDisposable
{
    private readonly List<(string Name, OrtValue Value)> _values = [];
    private readonly List<nint> _buffers = [];

    private SharedWeights()
    {
    }

    /// <summary>Packed copies of the shared weights, made by the first session that needs one and reused by the rest.</summary>
    public PrePackedWeightsContainer Prepacked { get; } = new();

    /// <summary>Bytes held for the sessions (the packed copies come on top).</summary>
    public long Bytes { get; private set; }

    /// <summary>
    /// The float initializers of <paramref name="model"/> with embedded data, as read at load; null where ONNX Runtime is
    /// not available (its sessions are then not made either).
    /// </summary>
    public static SharedWeights? TryFrom(byte[] model, ModelLimits limits)
    {
        try
        {
            return From(model, limits);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            return null;
        }
    }

    private static SharedWeights From(byte[] model, ModelLimits limits)
    {
        var graph = OnnxModelReader.Parse(model, limits).Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var weights = new SharedWeights();
        try
        {
            foreach (var tensor in graph.Initializer.DistinctBy(t => t.Name))
            {
                // An initializer that is also a graph input can be fed by the caller: it stays each session's own.
                if (tensor.DataType != (int)TensorProto.Types.DataType.Float || inputs.Contains(tensor.Name) || tensor.ExternalData.Count > 0) continue;
                if (tensor.Dims.Any(d => d <= 0)) continue;
                long n = tensor.Dims.Aggregate(1L, (a, d) => a * d);
                // The reader checked these at load; a tensor whose data does not match its dims is left to each session to refuse.
                if (tensor.RawData.Length == n * sizeof(float)) weights.Add(tensor.Name, tensor.Dims.ToArray(), MemoryMarshal.Cast<byte, float>(tensor.RawData.Span));
                else if (tensor.FloatData.Count == n) weights.Add(tensor.Name, tensor.Dims.ToArray(), tensor.FloatData.ToArray());
            }
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private void Add(string name, long[] dims, ReadOnlySpan<float> data)
    {
        long bytes = (long)data.Length * sizeof(float);
        var buffer = Marshal.AllocHGlobal((nint)bytes);
        _buffers.Add(buffer);
        var value = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, dims, buffer, bytes);
        _values.Add((name, value));
        data.CopyTo(value.GetTensorMutableDataAsSpan<float>());
        Bytes += bytes;
    }

    /// <summary>Hands every shared weight to a session about to be created with <paramref name="options"/>.</summary>
    public void AddTo(SessionOptions options)
    {
        foreach (var (name, value) in _values) options.AddInitializer(name, value);
    }

    public void Dispose()
    {
        foreach (var (_, value) in _values) value.Dispose();
        foreach (var buffer in _buffers) Marshal.FreeHGlobal(buffer);
        _values.Clear();
        _buffers.Clear();
        Prepacked.Dispose();
    }
}
