namespace JacService.Server.Execution;

/// <summary>
/// Whether any batch is running in the process, and when the last one ended: what <see cref="IdleMemoryReturn"/> waits
/// on. Process-wide, as the memory it gives back is. Two interlocked operations per batch.
/// </summary>
internal static class ComputeActivity
{
    private static int _running;
    private static long _ended;
    private static long _lastEndedMilliseconds;

    public static void Started() => Interlocked.Increment(ref _running);

    public static void Ended()
    {
        Volatile.Write(ref _lastEndedMilliseconds, Environment.TickCount64);
        Interlocked.Increment(ref _ended);
        Interlocked.Decrement(ref _running);
    }

    /// <summary>Batches running now, batches ended so far, and when the last ended (<see cref="Environment.TickCount64"/>).</summary>
    public static ComputeSnapshot Now() =>
        new(Volatile.Read(ref _running), Interlocked.Read(ref _ended), Volatile.Read(ref _lastEndedMilliseconds));
}
