using System.Runtime.InteropServices;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>Copies between managed float arrays and device tensors (the only place the engine touches host memory).</summary>
internal static class DeviceTransfer
{
    /// <summary>
    /// A request's values on the device, copied up from the managed array through a host tensor. On the H200 this
    /// beat staging through page-locked memory in 11 of 12 timings (16 against 19-22 µs for one row of mlp_tanh;
    /// docs/gpu.md): page-locking a fresh block per request cost more than the asynchronous copy saved, since the
    /// pass waits for the inputs anyway.
    /// </summary>
    public static Tensor ToDevice(HostTensor h, ScalarType type)
    {
        var t = tensor(h.Data, h.Shape);
        return t.dtype == type ? t : t.to_type(type);
    }

    public static Tensor[] ToDevice(HostTensor[] inputs, ModelGraph graph) =>
        inputs.Select((h, i) => ToDevice(h, graph.Inputs[i].ElementType.DeviceType(graph.ComputeType))).ToArray();

    /// <summary>
    /// Results as float32 in managed memory, each written into its reused array of <paramref name="into"/> when given
    /// (named by <paramref name="names"/>). With <paramref name="direct"/> (results on a GPU) libtorch copies each
    /// result straight from the device into its managed array, held in place for the copy: no host tensor in between.
    /// On the H200 that took a 256-row batch's results down in half the time of one staged transfer (docs/gpu.md).
    /// </summary>
    public static HostTensor[] ToHost(IReadOnlyList<Tensor> tensors, IReadOnlyList<string> names, ResultBuffers? into, bool direct)
    {
        if (!direct) return tensors.Select((t, i) => ToHost(t, into, names[i])).ToArray();
        var results = new HostTensor[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            int count = (int)t.numel();
            var target = into is null ? FloatArrayPool.Shared.Rent(count) : into.For(names[i], count);
            if (count > 0)
            {
                using var scope = NewDisposeScope();
                frombuffer(target, ScalarType.Float32, count).copy_(t.reshape(-1));
            }
            results[i] = new HostTensor(t.Dims(), target);
        }
        return results;
    }

    /// <summary>A result as float32 in managed memory; with <paramref name="into"/>, written into its reused array for <paramref name="name"/>.</summary>
    public static HostTensor ToHost(Tensor t, ResultBuffers? into = null, string name = "")
    {
        // One copy off a GPU per result; on the CPU the tensor's own memory is read.
        var host = t.device_type == TorchSharp.DeviceType.CPU ? t : t.cpu();
        var floats = host.dtype == ScalarType.Float32 ? host.contiguous() : host.to_type(ScalarType.Float32).contiguous();
        var source = MemoryMarshal.Cast<byte, float>(floats.bytes);
        var target = into is null ? FloatArrayPool.Shared.Rent(source.Length) : into.For(name, source.Length);
        source.CopyTo(target);
        return new HostTensor(t.Dims(), target);
    }
}
