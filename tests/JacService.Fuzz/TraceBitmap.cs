using System.Runtime.InteropServices;

namespace JacService.Fuzz;

/// <summary>
/// Instrumented assemblies (scripts/fuzz.sh's build) record every branch in afl-fuzz's shared bitmap; run outside
/// afl-fuzz (replay, seeds) nothing maps one, and the first branch would write through a null pointer.
/// </summary>
public static class TraceBitmap
{
    public static unsafe void EnsureMapped()
    {
        if (SharpFuzz.Common.Trace.SharedMem == null) SharpFuzz.Common.Trace.SharedMem = (byte*)NativeMemory.AllocZeroed(1 << 16);
    }
}
