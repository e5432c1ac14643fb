using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>
/// Engine:Device read against what this process's libtorch can reach: "cpu", "cuda" (the first GPU), "cuda:N", a
/// comma-separated list of GPUs, or "auto" (the first GPU when CUDA has one, else the CPU). Tensors are created on
/// TorchSharp's default device, which is process-wide. With one device that is the device itself; with several it is
/// "cuda" with no index, which libtorch resolves per thread to the thread's current GPU, and each thread that computes
/// (an executor, the loader while it loads a replica) is bound to its GPU first (<see cref="BindThread"/>).
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

    /// <summary>
    /// Where tensors are created, as set by <see cref="Use"/>: "cpu" until then, the device itself when one is used, and
    /// "cuda" (each thread's current GPU) when several are.
    /// </summary>
    public static string Current { get; private set; } = Cpu;

    /// <summary>Whether threads must be bound to their GPU before they compute (several GPUs in use).</summary>
    public static bool PerThread { get; private set; }

    /// <summary>Makes the <paramref name="devices"/> (resolved by <see cref="Resolve"/>) where tensors are created from now on.</summary>
    public static void Use(IReadOnlyList<string> devices)
    {
        PerThread = devices.Count > 1;
        Current = PerThread ? "cuda" : devices[0];
        set_default_device(new Device(Current));
    }

    /// <summary>
    /// Makes <paramref name="device"/> this thread's current GPU when several are in use (the tensors it creates from
    /// then on go there); nothing with one device, or on the CPU. Throws with libtorch's reason when the GPU refuses.
    /// </summary>
    public static void BindThread(string device)
    {
        if (!PerThread || device == Cpu) return;
        Graphs.CudaGraphNative.Check(Graphs.CudaGraphNative.jac_set_device(CudaIndex(device)), $"binding this thread to {device}");
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
