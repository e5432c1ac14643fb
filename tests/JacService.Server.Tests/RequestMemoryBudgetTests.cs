using System.Diagnostics.Metrics;
using JacService.Server.Admission;
using JacService.Server.Execution;
using Microsoft.Extensions.Options;

namespace JacService.Server.Tests;

public class RequestMemoryBudgetTests
{
    private static RequestMemoryBudget Budget(int mib) => new(Options.Create(new LimitsOptions { MaxRequestMiBInFlight = mib }), new Meter("JacService.Tests"));

    [Fact]
    public void HoldsUpToTheLimitAndRefusesWhatWouldPassIt()
    {
        var budget = Budget(8);
        Assert.True(budget.TryHold(5 << 20));
        Assert.True(budget.TryHold(2 << 20));
        Assert.False(budget.TryHold((1 << 20) + 1));
        Assert.Equal(7 << 20, budget.Held);
        budget.Release(2 << 20);
        Assert.True(budget.TryHold((1 << 20) + 1));
    }

    [Fact]
    public void AlwaysTakesAMessageOfUpTo1MiB()
    {
        // Held by large messages whose bodies trickle in, the budget still lets single samples and ordinary batches through.
        var budget = Budget(8);
        Assert.True(budget.TryHold(64 << 20));
        Assert.True(budget.TryHold(1 << 20));
        Assert.True(budget.TryHold(100));
        Assert.False(budget.TryHold((1 << 20) + 1));
        Assert.Equal((65 << 20) + 100, budget.Held);
    }

    [Fact]
    public void TakesAMessageOverTheWholeLimitWhenNothingIsHeld()
    {
        var budget = Budget(8);
        Assert.True(budget.TryHold(20 << 20));
        Assert.False(budget.TryHold(2 << 20));
        budget.Release(20 << 20);
        Assert.Equal(0, budget.Held);
    }
}
