using System.Text.RegularExpressions;

namespace JacService.Fuzz.Tests;

/// <summary>
/// Each harness under afl-fuzz for a minute, as scripts/fuzz.sh runs it: any crash (an exception type the service does
/// not map to a caller's status, a wrong answer, a native abort) or hang that its replay alone confirms fails the test,
/// with the replayed exceptions and times in its message. The long runs are recorded in docs/security.md.
/// </summary>
public sealed class FuzzRunTests(InstrumentedBuild build) : IClassFixture<InstrumentedBuild>
{
    private const int Seconds = 60;

    [Theory]
    [InlineData("model")]
    [InlineData("request")]
    public void AMinuteOfFuzzingFindsNothing(string harness)
    {
        var outDir = Path.Combine(build.Directory, harness);
        var run = FuzzScript.Run([harness, Seconds.ToString(), outDir], build.Environment, TimeSpan.FromMinutes(10));
        var stats = Regex.Match(run.Output, @"executions=(\d+) .* paths=(\d+) crashes=(\d+) hangs=(\d+)");
        Assert.True(stats.Success, $"no statistics from scripts/fuzz.sh:\n{run.Output}");
        Assert.True(run.ExitCode == 0, $"scripts/fuzz.sh {harness} exited {run.ExitCode}:\n{run.Output}");
        Assert.Equal("0", stats.Groups[3].Value);
        // What afl called a hang and the input's replay alone confirmed (scripts/fuzz.sh).
        Assert.Matches(@"(?m)^hangs_confirmed=0$", run.Output);
        // The harness really ran: inputs went through it and new paths were found beyond the seeds.
        Assert.True(long.Parse(stats.Groups[1].Value) > 100, run.Output);
        Assert.True(int.Parse(stats.Groups[2].Value) > Directory.GetFiles(Path.Combine(outDir, "seeds")).Length, run.Output);
    }
}
