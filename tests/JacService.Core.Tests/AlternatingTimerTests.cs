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

    /// <summary>Runs of over a second together are measured by their first round: each run of a large model adds seconds to the first request.</summary>
    [Fact]
    public void SlowRunsAreMeasuredByTheirFirstRound()
    {
        int a = 0, b = 0;
        var (first, second) = AlternatingTimer.Least(() => { a++; Thread.Sleep(700); }, () => { b++; Thread.Sleep(400); }, gpu: false);
        Assert.Equal((1, 1), (a, b));
        Assert.InRange(first, 700_000, 5_000_000);
        Assert.InRange(second, 400_000, first);
    }
}
