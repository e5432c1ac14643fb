using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>
/// Engine:Device read against what this process's libtorch can reach: "cpu", "cuda" (the first GPU), "cuda:N", a
/// comma-separated list of those, or "auto" (the first GPU when CUDA has one, else the CPU). One process computes on
/// one device for now: its tensors are created there by TorchSharp's default device, which is process-wide.
/// </summary>
public static class ComputeDevices
{
    public const string Auto = "auto";
    public const string Cpu = "cpu";

    /// <summary>GPUs this process's libtorch sees: 0 for a CPU build of libtorch, or where no GPU is visible.</summary>
    public static int CudaDevices() => cuda.is_available() ? cuda.device_count() : 0;

    /// <summary>
    /// The devices a setting names, in libtorch's spelling ("cpu", "cuda:0"), or why it cannot be served here: a form
    /// not understood, a device asked for twice, CUDA without a GPU, or a GPU index past the last.
    /// </summary>
    public static (IReadOnlyList<string> Devices, string? Problem) Resolve(string? setting, int cudaDevices)
    {
        var text = (setting ?? "").Trim().ToLowerInvariant();
        if (text is "" or Auto) return ([cudaDevices > 0 ? "cuda:0" : Cpu], null);
        var devices = new List<string>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var device = Parse(part);
            if (device is null)
                return ([], $"'{part}' is not a device: use cpu, cuda, cuda:N (N from 0), a comma-separated list of them, or auto");
            if (devices.Contains(device)) return ([], $"'{device}' is named twice");
            if (device != Cpu)
            {
                int index = int.Parse(device.AsSpan(5));
                if (cudaDevices == 0)
                    return ([], $"'{part}' asks for a GPU, but CUDA is not available to this process: the server runs libtorch for " +
                        "CPU (the CUDA build is -p:TorchBackend=cuda, image TORCH_BACKEND=cuda), or no GPU is visible to it " +
                        "(nvidia-smi; docker run --gpus; the pod's nvidia.com/gpu resource)");
                if (index >= cudaDevices)
                    return ([], $"'{part}' asks for GPU {index}, but this process sees {cudaDevices} (cuda:0 to cuda:{cudaDevices - 1})");
            }
            devices.Add(device);
        }
        if (devices.Contains(Cpu) && devices.Count > 1) return ([], "cpu cannot be listed beside GPUs");
        return (devices, null);
    }

    /// <summary>The device set by <see cref="Use"/> ("cpu" until then).</summary>
    public static string Current { get; private set; } = Cpu;

    /// <summary>Makes <paramref name="device"/> where every tensor is created from now on (TorchSharp's default device).</summary>
    public static void Use(string device)
    {
        set_default_device(new Device(device));
        Current = device;
    }

    /// <summary>The GPU index of a resolved CUDA device ("cuda:1" is 1).</summary>
    public static int CudaIndex(string device) =>
        device.StartsWith("cuda:", StringComparison.Ordinal) ? int.Parse(device.AsSpan(5)) : throw new ArgumentException($"'{device}' is not a CUDA device");

    private static string? Parse(string part)
    {
        if (part == Cpu) return Cpu;
        if (part == "cuda") return "cuda:0";
        if (!part.StartsWith("cuda:", StringComparison.Ordinal)) return null;
        var index = part.AsSpan(5);
        return index.Length is > 0 and < 4 && int.TryParse(index, System.Globalization.NumberStyles.None, null, out int n) ? $"cuda:{n}" : null;
    }
}
