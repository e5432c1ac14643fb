namespace JacService.Server.Execution;

/// <summary>What <see cref="ComputeActivity"/> saw at one moment.</summary>
internal readonly record struct ComputeSnapshot(int Running, long Ended, long LastEndedMilliseconds)
{
    /// <summary>
    /// Whether memory is due to go back: no batch running, at least one ended since the last return (<paramref name="endedAtReturn"/>:
    /// <see cref="Ended"/> then), and the last ended at least <paramref name="idleMilliseconds"/> before <paramref name="nowMilliseconds"/>.
    /// </summary>
    public bool IdleSinceWork(long endedAtReturn, long nowMilliseconds, long idleMilliseconds) =>
        Running == 0 && Ended > endedAtReturn && nowMilliseconds - LastEndedMilliseconds >= idleMilliseconds;
}
