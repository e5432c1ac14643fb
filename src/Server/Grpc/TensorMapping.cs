using Google.Protobuf;
using Google.Protobuf.Collections;
using JacService.Core.Models;
using JacService.Core.Onnx;
using ProtoTensor = JacService.Protos.V1.Tensor;
using WireTensor = JacService.Protos.V1.Wire.Tensor;

namespace JacService.Server.Grpc;

/// <summary>
/// Between the wire's Tensor messages and the engine's managed tensors. Requests arrive as the public messages;
/// results leave as the wire variant, whose data is the result array's own bytes (<see cref="FloatBytes"/>): the same
/// encoding as a packed repeated float, without copying the floats into the message first.
/// </summary>
internal static class TensorMapping
{
    public static Dictionary<string, HostTensor> FromProto(MapField<string, ProtoTensor> tensors) =>
        tensors.ToDictionary(p => p.Key, p => FromProto(p.Value));

    /// <summary>A request tensor as an engine tensor, its floats copied into an array from <see cref="FloatArrayPool"/>.</summary>
    public static HostTensor FromProto(ProtoTensor t)
    {
        var data = FloatArrayPool.Shared.Rent(t.Data.Count);
        t.Data.CopyTo(data, 0);
        return new(t.Shape.ToArray(), data);
    }

    public static WireTensor ToWire(HostTensor t, bool dropBatchAxis = false)
    {
        var wire = new WireTensor { Data = UnsafeByteOperations.UnsafeWrap(new FloatBytes(t.Data).Memory) };
        wire.Shape.AddRange(dropBatchAxis ? t.Shape[1..] : t.Shape);
        return wire;
    }

    public static void Fill(MapField<string, WireTensor> target, IReadOnlyDictionary<string, HostTensor> tensors, bool dropBatchAxis = false)
    {
        foreach (var (name, t) in tensors) target[name] = ToWire(t, dropBatchAxis);
    }

    public static Protos.V1.TensorInfo ToInfo(TensorSignature s)
    {
        var info = new Protos.V1.TensorInfo { Name = s.Name, Dtype = s.ElementType.OnnxName() };
        info.Shape.AddRange(s.Shape);
        return info;
    }
}
