using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace JacService.Core.Models;

/// <summary>
/// ONNX Runtime's <c>AddExternalInitializers</c>, which its managed API (1.32) does not expose: a session's initializers
/// whose data the graph marks as external are given as tensors over memory the caller owns. They replace the graph's
/// before any optimisation, so a pass that folds a weight (a Transpose of it, a Conv and its BatchNormalization) reads
/// the right values, and the graph need not carry them: a derivative graph of a 200 MB model is then kilobytes, not
/// 200 MB that ONNX Runtime parses and copies for every session.
/// </summary>
/// <remarks>
/// Called through the C API's function table, whose entries never move: a release only appends to it (the indices below
/// are those of onnxruntime_c_api.h, the same in every release since the function's, 1.12).
/// </remarks>
internal static unsafe class OrtExternalInitializers
{
    private const uint ApiVersion = 12;
    private const int GetErrorMessage = 2, CreateTensorWithDataAsOrtValue = 49, CreateCpuMemoryInfo = 69, ReleaseStatus = 93,
        ReleaseValue = 96, AddExternalInitializersEntry = 210;
    private const int FloatElement = 1, DeviceAllocator = 0, DefaultMemory = 0;

    /// <summary>The location a graph's external data names for a weight given here; it is never read as a file.</summary>
    public const string Location = "jacservice-shared-weight";

    /// <summary>Lets a session read the given buffers in place rather than copying them while it is made.</summary>
    public const string BorrowBuffersConfig = "session.use_external_initializer_file_buffers_directly";

    private static readonly Lazy<nint> Api = new(() => ((delegate* unmanaged[Cdecl]<uint, nint>)Marshal.ReadIntPtr(OrtGetApiBase()))(ApiVersion));
    // Made once and kept for the process: every tensor here is described by it.
    private static readonly Lazy<nint> CpuMemory = new(() =>
    {
        nint info;
        Check(((delegate* unmanaged[Cdecl]<int, int, nint*, nint>)Function(CreateCpuMemoryInfo))(DeviceAllocator, DefaultMemory, &info));
        return info;
    });

    [DllImport("onnxruntime")]
    private static extern nint OrtGetApiBase();

    private static nint Function(int index) => Marshal.ReadIntPtr(Api.Value, index * IntPtr.Size);

    /// <summary>A native float tensor over <paramref name="bytes"/> bytes at <paramref name="address"/>, which must outlive it; free with <see cref="Release"/>.</summary>
    public static nint FloatTensor(nint address, long bytes, long[] dims)
    {
        nint value;
        fixed (long* shape = dims)
            Check(((delegate* unmanaged[Cdecl]<nint, nint, nuint, long*, nuint, int, nint*, nint>)Function(CreateTensorWithDataAsOrtValue))(
                CpuMemory.Value, address, (nuint)bytes, shape, (nuint)dims.Length, FloatElement, &value));
        return value;
    }

    public static void Release(nint value) => ((delegate* unmanaged[Cdecl]<nint, void>)Function(ReleaseValue))(value);

    /// <summary>Gives a session about to be made with <paramref name="options"/> these tensors for the graph's external initializers of these names.</summary>
    public static void Add(SessionOptions options, IReadOnlyList<(string Name, nint Value)> initializers)
    {
        if (initializers.Count == 0) return;
        var names = initializers.Select(i => Marshal.StringToCoTaskMemUTF8(i.Name)).ToArray();
        var values = initializers.Select(i => i.Value).ToArray();
        try
        {
            fixed (nint* namePointers = names)
            fixed (nint* valuePointers = values)
                Check(((delegate* unmanaged[Cdecl]<nint, nint*, nint*, nuint, nint>)Function(AddExternalInitializersEntry))(
                    options.DangerousGetHandle(), namePointers, valuePointers, (nuint)names.Length));
        }
        finally
        {
            foreach (var name in names) Marshal.FreeCoTaskMem(name);
        }
    }

    private static void Check(nint status)
    {
        if (status == 0) return;
        string message = Marshal.PtrToStringUTF8(((delegate* unmanaged[Cdecl]<nint, nint>)Function(GetErrorMessage))(status)) ?? "";
        ((delegate* unmanaged[Cdecl]<nint, void>)Function(ReleaseStatus))(status);
        throw new InvalidOperationException($"ONNX Runtime: {message}");
    }
}
