using JacService.Core.Derivatives;

namespace JacService.Core.Tests;

/// <summary>How often the timer runs each way: what a first request waits for when AUTO or a compiled graph is timed.</summary>
public class AlternatingTimerTests
{
    [Fact]
    public void QuickRunsAreWarmedTwiceAndTimedInRounds()
    {
        int a = 0, b = 0;
        AlternatingTimer.Least(() => a++, () => b++, gpu: false);
        // Two untimed runs each, then rounds while they stay under 100 ms (five, unless the machine stalls).
        Assert.Equal(a, b);
        Assert.InRange(a, 3, 7);
    }

    /// <summary>Runs of over a second together are warmed once and timed once: each run of a large model adds seconds to the first request.</summary>
    [Fact]
    public void SlowRunsAreWarmedOnceAndTimedOnce()
    {
        int a = 0, b = 0;
        AlternatingTimer.Least(() => { a++; Thread.Sleep(600); }, () => { b++; Thread.Sleep(600); }, gpu: false);
        Assert.Equal((2, 2), (a, b));
    }
}
