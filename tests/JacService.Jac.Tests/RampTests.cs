using JacService.Jac.Load;

namespace JacService.Jac.Tests;

public sealed class RampTests
{
    private static int Sends(Ramp ramp) => Enumerable.Range(0, 1_000_000).TakeWhile(k => ramp.SendTime(k) is not null).Count();

    [Fact]
    public void Constant_rate_sends_rate_times_duration_at_even_intervals()
    {
        var ramp = new Ramp("none", 100, 100, 2, 1);
        Assert.Equal(200, Sends(ramp));
        Assert.Equal(0.5, ramp.SendTime(50)!.Value, 9);
    }

    [Fact]
    public void Linear_ramp_sends_the_integral_of_the_rate()
    {
        // 0 → 100 rps over 2 s: the area is 100 requests; half of them are due in the last 0.59 s.
        var ramp = new Ramp("linear", 0, 100, 2, 1);
        Assert.InRange(Sends(ramp), 99, 100);
        Assert.Equal(Math.Sqrt(2), ramp.SendTime(50)!.Value, 6);
        Assert.Equal(50, ramp.LevelAt(1), 9);
    }

    [Fact]
    public void Step_ramp_holds_equal_levels_for_equal_times()
    {
        // 5 steps up to 100 rps over 1 s: 20, 40, 60, 80, 100 rps for 0.2 s each.
        var ramp = new Ramp("step", 20, 100, 1, 5);
        Assert.Equal(4 + 8 + 12 + 16 + 20, Sends(ramp));
        Assert.Equal(20, ramp.LevelAt(0.1), 9);
        Assert.Equal(100, ramp.LevelAt(0.95), 9);
        Assert.Equal(0.2, ramp.SendTime(4)!.Value, 9); // the first send of the second step
    }
}
