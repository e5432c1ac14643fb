using System.Diagnostics.Metrics;
using JacService.Server.Admission;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using Microsoft.Extensions.Options;

namespace JacService.Server.Tests;

public class CallMemoryBudgetTests
{
    private const long MiB = 1 << 20;

    private static CallMemoryBudget Budget(int mib) => new(Options.Create(new LimitsOptions { MaxInFlightMiB = mib }), new Meter("JacService.Tests"));

    [Fact]
    public void HoldsUpToTheLimitAndRefusesWhatWouldPassIt()
    {
        var budget = Budget(8);
        using var first = budget.Open();
        Assert.True(first.TryHold(5 * MiB));
        var second = budget.Open();
        Assert.True(second.TryHold(2 * MiB));
        using var third = budget.Open();
        Assert.False(third.TryHold(MiB + 1));
        Assert.Equal(7 * MiB, budget.Held);
        second.Dispose();
        Assert.Equal(5 * MiB, budget.Held);
        Assert.True(third.TryHold(MiB + 1));
    }

    [Fact]
    public void ACallTakesWhatItNeedsWhenNoOtherCallHoldsAnything()
    {
        var budget = Budget(8);
        using (var call = budget.Open())
        {
            // Its request message, then a result over the whole budget: refused always, it could never be served.
            Assert.True(call.TryHold(2 * MiB));
            Assert.True(call.TryHold(20 * MiB));
            using var other = budget.Open();
            Assert.False(other.TryHold(2 * MiB));
        }
        Assert.Equal(0, budget.Held);
    }

    [Fact]
    public void AlwaysTakesUpTo1MiBAtATime()
    {
        // Held by large messages whose bodies trickle in, the budget still lets single samples and ordinary batches through.
        var budget = Budget(8);
        using var trickling = budget.Open();
        Assert.True(trickling.TryHold(64 * MiB));
        using var small = budget.Open();
        Assert.True(small.TryHold(MiB));
        Assert.True(small.TryHold(100));
        Assert.False(small.TryHold(MiB + 1));
        Assert.Equal(65 * MiB + 100, budget.Held);
    }

    [Fact]
    public void HoldRefusesTheCallWithWhatItWouldHaveTaken()
    {
        var budget = Budget(8);
        using var first = budget.Open();
        first.Hold(6 * MiB, "request message");
        using var second = budget.Open();
        var refused = Assert.Throws<CallMemoryExceededException>(() => second.Hold(3 * MiB, "result"));
        Assert.Equal("the server holds 6.0 MiB for calls in progress, and this call's result of 3.0 MiB would pass " +
            "Limits:MaxInFlightMiB (8.0 MiB); retry when calls in progress have answered", refused.Message);
    }
}
