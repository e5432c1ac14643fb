using System.Runtime.InteropServices;
using JacService.Core.Onnx;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>Copies between managed float arrays and device tensors (the only place the engine touches host memory).</summary>
internal static class DeviceTransfer
{
    public static Tensor ToDevice(HostTensor h, ScalarType type)
    {
        var t = tensor(h.Data, h.Shape);
        return t.dtype == type ? t : t.to_type(type);
    }

    public static Tensor[] ToDevice(HostTensor[] inputs, ModelGraph graph) =>
        inputs.Select((h, i) => ToDevice(h, graph.Inputs[i].ElementType.DeviceType(graph.ComputeType))).ToArray();

    /// <summary>A result as float32 in managed memory; with <paramref name="into"/>, written into its reused array for <paramref name="name"/>.</summary>
    public static HostTensor ToHost(Tensor t, ResultBuffers? into = null, string name = "")
    {
        // One copy off a GPU per result; on the CPU the tensor's own memory is read.
        var host = t.device_type == TorchSharp.DeviceType.CPU ? t : t.cpu();
        var floats = host.dtype == ScalarType.Float32 ? host.contiguous() : host.to_type(ScalarType.Float32).contiguous();
        var source = MemoryMarshal.Cast<byte, float>(floats.bytes);
        if (into is null) return new HostTensor(t.shape, source.ToArray());
        var target = into.For(name, source.Length);
        source.CopyTo(target);
        return new HostTensor(t.shape, target);
    }
}
