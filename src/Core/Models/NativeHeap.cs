using System.Runtime.InteropServices;

namespace JacService.Core.Models;

/// <summary>
/// How libtorch's CPU tensors get their memory from glibc. By default glibc serves every block over its mmap
/// threshold (at most 32 MiB) with a fresh mapping and unmaps it on free, so each large temporary (a tangent or a
/// Hessian term of a batch) pays a page fault per 4 KiB page on first touch. On these machines that made a 20M-float
/// product 25-40x slower than the same product into reused memory (docs/benchmarks.md, "Large temporaries").
/// Raising the mmap and trim thresholds keeps large blocks in the heap for reuse; the process then keeps its peak
/// heap (bounded by Engine:WorkingMemoryMiB and the result limits) instead of returning it between batches. A thread's
/// own arena lives in 64 MiB heaps and maps anything larger afresh whatever the thresholds; capping the arenas at one
/// sends threads started later to existing arenas, but those .NET's own threads made before this call remain, so the
/// engine also keeps its temporaries under <see cref="EngineLimits.LargestTemporaryBytes"/>.
/// </summary>
public static class NativeHeap
{
    private const int MmapThreshold = -3;   // M_MMAP_THRESHOLD
    private const int TrimThreshold = -1;   // M_TRIM_THRESHOLD
    private const int ArenaMax = -8;        // M_ARENA_MAX

    /// <summary>Keeps blocks up to 2 GiB in one heap shared by all threads, and freed memory in the process. False where glibc is not the allocator.</summary>
    public static bool KeepLargeBlocks()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return mallopt(ArenaMax, 1) == 1 && mallopt(MmapThreshold, int.MaxValue) == 1 && mallopt(TrimThreshold, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // musl and other C libraries have no mallopt
        }
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
