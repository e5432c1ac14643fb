using JacService.Server.Execution;

namespace JacService.Server.Tests;

/// <summary>When Engine:ReturnMemoryWhenIdleSeconds gives memory back: only after work, only once per idle spell, never while a batch runs.</summary>
public class ComputeSnapshotTests
{
    private const long Idle = 30_000;

    [Fact]
    public void MemoryGoesBackOnceTheLastBatchEndedAnIdleSpellAgo()
    {
        var snapshot = new ComputeSnapshot(Running: 0, Ended: 5, LastEndedMilliseconds: 1_000);
        Assert.False(snapshot.IdleSinceWork(endedAtReturn: 0, nowMilliseconds: 1_000 + Idle - 1, Idle));
        Assert.True(snapshot.IdleSinceWork(endedAtReturn: 0, nowMilliseconds: 1_000 + Idle, Idle));
    }

    [Fact]
    public void NotWhileABatchRuns()
    {
        // A long batch (a second derivative of a large model) can run for longer than the idle spell.
        var snapshot = new ComputeSnapshot(Running: 1, Ended: 5, LastEndedMilliseconds: 1_000);
        Assert.False(snapshot.IdleSinceWork(endedAtReturn: 0, nowMilliseconds: 1_000 + 10 * Idle, Idle));
    }

    [Fact]
    public void NotAgainUntilMoreWorkHasRun()
    {
        var snapshot = new ComputeSnapshot(Running: 0, Ended: 5, LastEndedMilliseconds: 1_000);
        Assert.False(snapshot.IdleSinceWork(endedAtReturn: 5, nowMilliseconds: 1_000 + 10 * Idle, Idle));
        Assert.True(snapshot with { Ended = 6 } is var after && after.IdleSinceWork(endedAtReturn: 5, nowMilliseconds: 1_000 + Idle, Idle));
    }

    [Fact]
    public void NotBeforeAnyWork()
    {
        // At start the loader has already given back what loading used.
        Assert.False(new ComputeSnapshot(0, 0, 0).IdleSinceWork(endedAtReturn: 0, nowMilliseconds: 10 * Idle, Idle));
    }
}
