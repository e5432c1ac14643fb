using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;
using static TorchSharp.torch;

namespace JacService.Core.Models;

/// <summary>
/// Lets the MKL inside libtorch pick its matrix-product kernels by what the CPU can do rather than by who made it.
/// MKL runs its AVX-512 kernels only where CPUID says "GenuineIntel"; on AMD EPYC (Zen 4/5, which have AVX-512) it
/// falls back to AVX2 code: a float32 [1024x1024] product ran at 81 GFLOP/s per thread here against 179 with the
/// check answered "yes", and against 185 for Debian's OpenBLAS, which the functorch peer uses (docs/benchmarks.md,
/// "Matrix products and the CPU vendor"). The community's fix is an LD_PRELOAD library that redefines
/// <c>mkl_serv_intel_cpu_true</c>; that needs a compiler and an environment variable wherever the server starts.
/// This does the same from inside the process: the function (exported by libtorch_cpu.so) returns a cached answer
/// once the cache holds one, so this stores 1 in that cache before the first matrix product. The cache's address is
/// read from the function's first instruction, and only when the code is exactly the shape this was written against;
/// any other MKL build is left as it is.
/// </summary>
public static class MklDispatch
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int IntelCpuCheck();

    /// <summary>The CPU's vendor string from CPUID leaf 0 ("GenuineIntel", "AuthenticAMD"), or null off x86.</summary>
    public static string? CpuVendor()
    {
        if (!X86Base.IsSupported) return null;
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<byte> vendor = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(vendor, ebx);
        BinaryPrimitives.WriteInt32LittleEndian(vendor[4..], edx);
        BinaryPrimitives.WriteInt32LittleEndian(vendor[8..], ecx);
        return Encoding.ASCII.GetString(vendor);
    }

    /// <summary>
    /// Makes MKL take its Intel code paths (each still chosen by the CPU's feature flags) on a CPU of another vendor.
    /// Returns what happened, for the start-up log. Call before the first matrix product: MKL keeps its kernel choice.
    /// </summary>
    public static MklDispatchOutcome IgnoreCpuVendor()
    {
        string? vendor = CpuVendor();
        if (vendor is null) return MklDispatchOutcome.NotX86;
        if (vendor == "GenuineIntel") return MklDispatchOutcome.IntelAlready;
        // Loads libtorch if nothing has yet; the CUDA package ships libtorch_cpu.so too.
        _ = get_num_threads();
        if (!NativeLibrary.TryLoad("libtorch_cpu.so", typeof(TorchSharp.torch).Assembly, DllImportSearchPath.AssemblyDirectory, out var library)
            && !NativeLibrary.TryLoad("libtorch_cpu.so", out library))
            return MklDispatchOutcome.NoLibTorch;
        if (!NativeLibrary.TryGetExport(library, "mkl_serv_intel_cpu_true", out var check))
            return MklDispatchOutcome.NoMkl;

        // Expected: mov eax, [rip + disp32]; test eax, eax; js +1; ret   (8b 05 d32 | 85 c0 | 78 01 | c3)
        var code = new byte[11];
        Marshal.Copy(check, code, 0, code.Length);
        if (code is not [0x8b, 0x05, _, _, _, _, 0x85, 0xc0, 0x78, 0x01, 0xc3])
            return MklDispatchOutcome.UnknownMklBuild;
        nint cache = check + 6 + BinaryPrimitives.ReadInt32LittleEndian(code.AsSpan(2, 4));
        Marshal.WriteInt32(cache, 1);
        return Marshal.GetDelegateForFunctionPointer<IntelCpuCheck>(check)() == 1
            ? MklDispatchOutcome.Applied
            : MklDispatchOutcome.UnknownMklBuild;
    }
}
