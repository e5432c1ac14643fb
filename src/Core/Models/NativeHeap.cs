using System.Runtime.InteropServices;

namespace JacService.Core.Models;

/// <summary>
/// How libtorch's CPU tensors get their memory from glibc. By default glibc serves every block over its mmap
/// threshold (at most 32 MiB) with a fresh mapping and unmaps it on free, so each large temporary (a tangent or a
/// Hessian term of a batch) pays a page fault per 4 KiB page on first touch. On these machines that made a 20M-float
/// product 25-40x slower than the same product into reused memory (docs/benchmarks.md, "Large temporaries").
/// Raising the mmap and trim thresholds keeps large blocks in the heap for reuse; the process then keeps its peak
/// heap (bounded by Engine:WorkingMemoryMiB and the result limits) instead of returning it between batches.
/// <para>
/// Threads other than the first allocate from their own arenas, built of 64 MiB heaps. glibc unmaps such a heap as
/// soon as it is wholly free, whatever the trim threshold, unless the top pad is at least a heap's size: without the
/// pad, a small_cnn batch of 256 mapped and unmapped a heap per call on the executor threads, ~1,050 page faults and
/// a third of the call's CPU (docs/benchmarks.md, "Arena heaps kept"). The arena limit bounds only arenas made after
/// it: .NET's own threads have made theirs already, and threads started later share those. One arena from the start
/// (MALLOC_ARENA_MAX=1 in the environment) was measured too, and was slower on the wide models (one lock for all
/// threads), so it is not asked for.
/// </para>
/// </summary>
public static class NativeHeap
{
    private const int MmapThreshold = -3;   // M_MMAP_THRESHOLD
    private const int TrimThreshold = -1;   // M_TRIM_THRESHOLD
    private const int TopPad = -2;          // M_TOP_PAD
    private const int ArenaMax = -8;        // M_ARENA_MAX

    /// <summary>A thread arena's heap size (glibc's HEAP_MAX_SIZE on 64-bit): a top pad this large keeps every heap mapped.</summary>
    private const int ArenaHeapBytes = 64 << 20;

    /// <summary>Keeps blocks up to 2 GiB in the heap, and freed memory (arena heaps included) in the process. False where glibc is not the allocator.</summary>
    public static bool KeepLargeBlocks()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return mallopt(ArenaMax, 1) == 1 && mallopt(MmapThreshold, int.MaxValue) == 1 && mallopt(TrimThreshold, int.MaxValue) == 1
                && mallopt(TopPad, ArenaHeapBytes) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // musl and other C libraries have no mallopt
        }
    }

    /// <summary>
    /// Gives the pages of the heap's free blocks back to the system (malloc_trim), which <see cref="KeepLargeBlocks"/>
    /// otherwise keeps for the process's life: called when a model version has been freed, so that unloading a model
    /// lowers the resident size. The next large temporaries fault their pages in again, once. False where glibc is
    /// not the allocator or nothing was given back.
    /// </summary>
    public static bool ReturnFreePages()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return malloc_trim(0) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);

    /// <summary>
    /// Bytes glibc has handed out and not had back, over all arenas (mallinfo2); null where glibc is not the allocator.
    /// Unlike the resident size, it falls when memory is freed, however much of the heap <see cref="KeepLargeBlocks"/> keeps.
    /// </summary>
    public static long? BytesInUse()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var info = mallinfo2();
            return (long)(info.UordBlks + info.HBlkHd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 mallinfo2();

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int param, int value);
}
