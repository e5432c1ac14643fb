using System.Collections.Concurrent;
using JacService.Core.Planning;
using Xunit;

namespace JacService.Core.Tests;

/// <summary>
/// A value one batch computes while others wait: when the computing batch is abandoned midway, a waiting batch whose
/// callers are still there computes the value itself instead of failing with the other batch's cancellation; any other
/// failure reaches the waiters, and the failed entry is removed so that the next caller computes it again.
/// </summary>
public sealed class SharedEntriesTests
{
    private readonly ConcurrentDictionary<string, Lazy<int>> _entries = new();

    [Fact]
    public async Task AWaiterComputesWhatTheAbandonedBatchStopped()
    {
        using var abandoned = new CancellationTokenSource();
        var started = new ManualResetEventSlim();
        var stop = new ManualResetEventSlim();
        var first = Task.Run(() =>
        {
            using (BatchCancellation.Enter(abandoned.Token))
                return SharedEntries.GetOrCompute(_entries, "key", () =>
                {
                    started.Set();
                    stop.Wait();
                    BatchCancellation.ThrowIfRequested();
                    return 1;
                });
        });
        started.Wait();
        using var live = new CancellationTokenSource();
        int computedByWaiter = 0;
        var waiter = Task.Run(() =>
        {
            using (BatchCancellation.Enter(live.Token))
                return SharedEntries.GetOrCompute(_entries, "key", () => ++computedByWaiter * 42);
        });
        // The waiter is blocked on the first batch's computation (its own has not run).
        await Task.Delay(200);
        Assert.False(waiter.IsCompleted);

        await abandoned.CancelAsync();
        stop.Set();

        await Assert.ThrowsAsync<OperationCanceledException>(() => first);
        Assert.Equal(42, await waiter);
        Assert.Equal(1, computedByWaiter);
        Assert.Equal(42, _entries["key"].Value);
    }

    [Fact]
    public async Task AStopWrappedInAnotherFailureIsAStopToo()
    {
        using var abandoned = new CancellationTokenSource();
        await abandoned.CancelAsync();
        var stopped = new InvalidOperationException("node /layer1/Tanh failed", new OperationCanceledException(abandoned.Token));
        _entries["key"] = new Lazy<int>(() => throw stopped);

        Assert.Equal(7, SharedEntries.GetOrCompute(_entries, "key", () => 7));
    }

    [Fact]
    public void AnyOtherFailureReachesTheCallerAndIsComputedAgainNextTime()
    {
        Assert.Throws<InvalidOperationException>(() => SharedEntries.GetOrCompute<string, int>(_entries, "key", () => throw new InvalidOperationException("no")));
        Assert.Empty(_entries);

        // The caller's own batch abandoned: its stop is its own, not retried.
        using var own = new CancellationTokenSource();
        own.Cancel();
        using (BatchCancellation.Enter(own.Token))
            Assert.Throws<OperationCanceledException>(() => SharedEntries.GetOrCompute(_entries, "key", () =>
            {
                BatchCancellation.ThrowIfRequested();
                return 1;
            }));
        Assert.Empty(_entries);

        Assert.Equal(3, SharedEntries.GetOrCompute(_entries, "key", () => 3));
    }
}
