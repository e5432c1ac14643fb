using System.Runtime.InteropServices;
using JacService.Core.Onnx;
using JacService.Core.Ops;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>Copies between managed float arrays and device tensors (the only place the engine touches host memory).</summary>
internal static class DeviceTransfer
{
    // Cleared the first time page-locking fails on this machine: uploads then go from pageable memory, as on the CPU.
    private static volatile bool _pinnedUploads = true;

    /// <summary>
    /// A request's values on the device. On a GPU they go up from page-locked memory (libtorch's caching host
    /// allocator reuses those blocks), asynchronously on the executor thread's stream, ahead of the pass that reads them.
    /// </summary>
    public static Tensor ToDevice(HostTensor h, ScalarType type)
    {
        Tensor t;
        if (ComputeDevices.Current == ComputeDevices.Cpu || !_pinnedUploads)
        {
            t = tensor(h.Data, h.Shape);
        }
        else
        {
            try
            {
                using var staged = tensor(h.Data, h.Shape, device: CPU).pin_memory();
                t = staged.to(new Device(ComputeDevices.Current), non_blocking: true);
            }
            catch (ExternalException)
            {
                _pinnedUploads = false;
                t = tensor(h.Data, h.Shape);
            }
        }
        return t.dtype == type ? t : t.to_type(type);
    }

    public static Tensor[] ToDevice(HostTensor[] inputs, ModelGraph graph) =>
        inputs.Select((h, i) => ToDevice(h, graph.Inputs[i].ElementType.DeviceType(graph.ComputeType))).ToArray();

    /// <summary>
    /// Results as float32 in managed memory, each written into its reused array of <paramref name="into"/> when given
    /// (named by <paramref name="names"/>). With <paramref name="oneTransfer"/> (results on a GPU) they leave the device
    /// together: flattened, laid end to end on the device, copied to the host once and cut there, one synchronisation
    /// per batch instead of one per result.
    /// </summary>
    public static HostTensor[] ToHost(IReadOnlyList<Tensor> tensors, IReadOnlyList<string> names, ResultBuffers? into, bool oneTransfer)
    {
        if (!oneTransfer || tensors.Count < 2) return tensors.Select((t, i) => ToHost(t, into, names[i])).ToArray();
        using var scope = NewDisposeScope();
        using var flat = cat(tensors.Select(t => t.to_type(ScalarType.Float32).reshape(-1)).ToArray()).cpu();
        var source = MemoryMarshal.Cast<byte, float>(flat.bytes);
        var results = new HostTensor[tensors.Count];
        int offset = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            int count = (int)tensors[i].numel();
            var target = into is null ? FloatArrayPool.Shared.Rent(count) : into.For(names[i], count);
            source.Slice(offset, count).CopyTo(target);
            results[i] = new HostTensor(tensors[i].Dims(), target);
            offset += count;
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
