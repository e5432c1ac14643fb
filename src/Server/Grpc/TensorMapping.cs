using Google.Protobuf.Collections;
using JacService.Core.Models;
using JacService.Core.Onnx;
using ProtoTensor = JacService.Protos.V1.Tensor;

namespace JacService.Server.Grpc;

/// <summary>Between the wire's Tensor messages and the engine's managed tensors.</summary>
internal static class TensorMapping
{
    public static Dictionary<string, HostTensor> FromProto(MapField<string, ProtoTensor> tensors) =>
        tensors.ToDictionary(p => p.Key, p => FromProto(p.Value));

    public static HostTensor FromProto(ProtoTensor t) => new(t.Shape.ToArray(), t.Data.ToArray());

    public static ProtoTensor ToProto(HostTensor t, bool dropBatchAxis = false)
    {
        var proto = new ProtoTensor();
        proto.Shape.AddRange(dropBatchAxis ? t.Shape[1..] : t.Shape);
        proto.Data.AddRange(t.Data);
        return proto;
    }

    public static void Fill(MapField<string, ProtoTensor> target, IReadOnlyDictionary<string, HostTensor> tensors, bool dropBatchAxis = false)
    {
        foreach (var (name, t) in tensors) target[name] = ToProto(t, dropBatchAxis);
    }

    public static Protos.V1.TensorInfo ToInfo(TensorSignature s)
    {
        var info = new Protos.V1.TensorInfo { Name = s.Name, Dtype = s.ElementType.OnnxName() };
        info.Shape.AddRange(s.Shape);
        return info;
    }
}
