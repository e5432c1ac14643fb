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
        Assert.True(budget.TryHold(3 << 20));
        Assert.False(budget.TryHold(1));
        Assert.Equal(8 << 20, budget.Held);
        budget.Release(3 << 20);
        Assert.True(budget.TryHold(1));
    }

    [Fact]
    public void TakesAMessageOverTheWholeLimitWhenNothingIsHeld()
    {
        var budget = Budget(8);
        Assert.True(budget.TryHold(20 << 20));
        Assert.False(budget.TryHold(1));
        budget.Release(20 << 20);
        Assert.Equal(0, budget.Held);
    }
}
