using System.Runtime.InteropServices;
using Google.Protobuf;
using JacService.Core.Models;
using JacService.Core.Onnx;
using JacService.Core.Onnx.Proto;
using TorchSharp;

namespace JacService.Core.Compiled;

/// <summary>
/// A version's model file as its derivative graphs are written from it: the file's bytes less the raw data of the float
/// weights the engine's tensors hold byte for byte, which go back in from those tensors each time the file is parsed.
/// The whole file kept was one more copy of the weights per version (108 MB for ConvNeXt-Tiny). The tensors must outlive
/// this object; the engine never writes to them.
/// </summary>
internal sealed class KeptModel
{
    private readonly byte[] _bytes;
    private readonly ModelLimits _limits;
    // By position among the graph's initializers, which serialising and parsing again keeps.
    private readonly Dictionary<int, torch.Tensor> _held;

    private KeptModel(byte[] bytes, ModelLimits limits, Dictionary<int, torch.Tensor> held) => (_bytes, _limits, _held) = (bytes, limits, held);

    /// <summary>Bytes kept: the file's, less the weights left to the engine's tensors.</summary>
    public long Bytes => _bytes.LongLength;

    /// <param name="held">The engine's tensor for an initializer, by name, or null; null for none (the whole file is kept).</param>
    public static KeptModel From(byte[] file, ModelLimits limits, Func<string, torch.Tensor?>? held)
    {
        var left = new Dictionary<int, torch.Tensor>();
        if (held is null) return new(file, limits, left);
        var model = OnnxModelReader.ParseAsWritten(file, limits);
        var initializers = model.Graph.Initializer;
        for (int i = 0; i < initializers.Count; i++)
        {
            var tensor = initializers[i];
            if (tensor.DataType != (int)TensorProto.Types.DataType.Float || tensor.RawData.Length == 0 || tensor.RawData.Length % sizeof(float) != 0) continue;
            if (held(tensor.Name) is not { } engine || SharedWeights.Same(engine, tensor.Dims.ToArray(), MemoryMarshal.Cast<byte, float>(tensor.RawData.Span)) is null) continue;
            left[i] = engine;
            tensor.RawData = ByteString.Empty;
        }
        return new(left.Count == 0 ? file : model.ToByteArray(), limits, left);
    }

    /// <summary>The file as <see cref="OnnxModelReader"/> parses it, every weight's data in place before the graph is expanded.</summary>
    public ModelProto Parse()
    {
        var model = OnnxModelReader.ParseAsWritten(_bytes, _limits);
        foreach (var (index, engine) in _held) model.Graph.Initializer[index].RawData = ByteString.CopyFrom(engine.bytes);
        return OnnxModelReader.Expand(model, _limits);
    }
}
