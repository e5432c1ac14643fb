using System.Runtime.InteropServices;

namespace JacService.Core.Graphs;

/// <summary>
/// libJacServiceCudaGraphs (src/Native): libtorch's CUDA graph capture, stream pool and per-thread current device,
/// which TorchSharp does not expose. Built only where libtorch's CUDA headers exist (the CUDA image, the GPU machine); <see cref="Availability"/>
/// says whether this process has it. Every call returns 0, or -1 with the reason in <see cref="LastError"/>.
/// </summary>
internal static class CudaGraphNative
{
    public const string Library = "JacServiceCudaGraphs";
    private const int ApiVersion = 2;

    private static readonly Lazy<string?> Problem = new(Probe);

    /// <summary>Null when the library is loaded and speaks this API; else why not, for logs, errors and GetModel.</summary>
    public static string? Availability => Problem.Value;

    [DllImport(Library)] private static extern IntPtr jac_last_error();
    [DllImport(Library)] private static extern int jac_graphs_api_version();
    [DllImport(Library)] public static extern int jac_set_device(int device);
    [DllImport(Library)] public static extern int jac_side_stream_begin(int device, out IntPtr handle);
    [DllImport(Library)] public static extern int jac_side_stream_end(IntPtr handle);
    [DllImport(Library)] public static extern int jac_graph_new(int device, out IntPtr graph);
    [DllImport(Library)] public static extern int jac_graph_capture_begin(IntPtr graph);
    [DllImport(Library)] public static extern int jac_graph_capture_end(IntPtr graph);
    [DllImport(Library)] public static extern int jac_graph_replay(IntPtr graph);
    [DllImport(Library)] public static extern int jac_graph_free(IntPtr graph);

    public static string LastError => Marshal.PtrToStringUTF8(jac_last_error()) ?? "";

    /// <summary>Throws with the library's reason when <paramref name="status"/> says a call failed.</summary>
    public static void Check(int status, string what)
    {
        if (status != 0) throw new InvalidOperationException($"{what}: {LastError}");
    }

    private static string? Probe()
    {
        try
        {
            // The same search DllImport makes (the app's folder first), but with the loader's message when it fails:
            // a missing file and a library that cannot find libtorch_cuda are different fixes.
            NativeLibrary.Load(Library, typeof(CudaGraphNative).Assembly, null);
            int version = jac_graphs_api_version();
            return version == ApiVersion ? null : $"lib{Library}.so speaks API version {version}, this server {ApiVersion}: rebuild src/Native";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return $"lib{Library}.so is not loadable ({e.Message.Split('\n')[0]}); it is built from src/Native where libtorch has CUDA";
        }
    }
}
