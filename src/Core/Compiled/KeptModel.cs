using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Compiled;

/// <summary>
/// A version's model file as its derivative graphs are written from it: the file as parsed at load, less the raw data of
/// the float weights the engine's tensors hold byte for byte, which each graph gets back from those tensors, wrapped and
/// not copied. The whole file kept was one more copy of the weights per version (108 MB for ConvNeXt-Tiny), and each
/// graph's copy of them one more fresh allocation of their size (200 MB per graph of a 200 MB MLP's warm-up). The
/// tensors must outlive this object and every model it gives; the engine never writes to them.
/// </summary>
internal sealed class KeptModel
{
    private readonly ModelProto _model;
    private readonly ModelLimits _limits;
    // By position among the graph's initializers, which cloning keeps.
    private readonly Dictionary<int, torch.Tensor> _held;

    private KeptModel(ModelProto model, ModelLimits limits, Dictionary<int, torch.Tensor> held) =>
        (_model, _limits, _held, Bytes) = (model, limits, held, model.CalculateSize());

    /// <summary>Bytes kept beyond the engine's tensors: the file's, less the weights left to them.</summary>
    public long Bytes { get; }

    /// <param name="file">The file's model as <see cref="OnnxModelReader.ParseAsWritten"/> gives it; left as it was.</param>
    /// <param name="held">The engine's tensor for an initializer, by name, or null; null for none (the whole file is kept).</param>
    public static KeptModel From(ModelProto file, ModelLimits limits, Func<string, torch.Tensor?>? held)
    {
        var left = new Dictionary<int, torch.Tensor>();
        // A clone shares the weights' bytes, which are never written to.
        var model = file.Clone();
        if (held is null) return new(model, limits, left);
        var initializers = model.Graph.Initializer;
        for (int i = 0; i < initializers.Count; i++)
        {
            var tensor = initializers[i];
            if (tensor.DataType != (int)TensorProto.Types.DataType.Float || tensor.RawData.Length == 0 || tensor.RawData.Length % sizeof(float) != 0) continue;
            if (held(tensor.Name) is not { } engine || SharedWeights.Same(engine, tensor.Dims.ToArray(), MemoryMarshal.Cast<byte, float>(tensor.RawData.Span)) is null) continue;
            left[i] = engine;
            tensor.RawData = ByteString.Empty;
        }
        return new(model, limits, left);
    }

    /// <summary>The file's model as <see cref="OnnxModelReader"/> reads it, every weight's data in place before the graph is expanded.</summary>
    public ModelProto Expanded()
    {
        var model = _model.Clone();
        foreach (var (index, engine) in _held) model.Graph.Initializer[index].RawData = UnsafeByteOperations.UnsafeWrap(new TensorBytes(engine).Memory);
        return OnnxModelReader.Expand(model, _limits);
    }
}
