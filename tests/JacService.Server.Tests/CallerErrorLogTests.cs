using System.ComponentModel.DataAnnotations;
using JacService.Server.Grpc;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace JacService.Server.Tests;

/// <summary>Caller errors are logged at most once per kind per interval, each line counting the ones it stood for, at the level set.</summary>
public class CallerErrorLogTests
{
    private const string Method = "/jacservice.v1.JacobianService/Predict";
    private readonly FakeTimeProvider _clock = new();
    private readonly CapturingLogger<CallerErrorLog> _log = new();

    private CallerErrorLog Log(LogLevel level = LogLevel.Information, int seconds = 10) =>
        new(Options.Create(new CallerErrorsOptions { LogLevel = level, LogIntervalSeconds = seconds }), _clock, _log);

    [Fact]
    public void OneLinePerKindPerIntervalSayingHowManyItStoodFor()
    {
        var log = Log();

        for (int i = 0; i < 1000; i++) log.Report("InvalidArgument", Method, $"bad request {i}");
        _clock.Advance(TimeSpan.FromSeconds(9.9));
        log.Report("InvalidArgument", Method, "still within the interval");
        _clock.Advance(TimeSpan.FromSeconds(0.1));
        log.Report("InvalidArgument", Method, "the next interval");

        Assert.Equal(
        [
            $"Caller error InvalidArgument in {Method}: bad request 0 (0 more of this kind since the last line; at most one line per 10 s)",
            $"Caller error InvalidArgument in {Method}: the next interval (1000 more of this kind since the last line; at most one line per 10 s)",
        ], _log.Entries.Select(e => e.Message));
        Assert.All(_log.Entries, e => Assert.Equal(LogLevel.Information, e.Level));
        Assert.All(_log.Entries, e => Assert.Null(e.Exception));
    }

    [Fact]
    public void EachKindHasItsOwnInterval()
    {
        var log = Log();

        log.Report("InvalidArgument", Method, "a");
        log.Report(CallerErrorLog.MalformedMessage, Method, "b");
        log.Report("NotFound", Method, "c");
        log.Report("NotFound", Method, "d");

        Assert.Equal(["a", "b", "c"], _log.Entries.Select(e => e.Message.Split(": ")[1][..1]));
    }

    [Fact]
    public void TheLevelIsTheOperatorsAndNoneIsSilent()
    {
        Log(LogLevel.Debug).Report("NotFound", Method, "x");
        Log(LogLevel.None).Report("NotFound", Method, "y");

        Assert.Equal(LogLevel.Debug, Assert.Single(_log.Entries).Level);
    }

    [Theory]
    [InlineData(0, LogLevel.Information)]
    [InlineData(10, (LogLevel)42)]
    public void SettingsOutOfRangeAreRefused(int seconds, LogLevel level)
    {
        var options = new CallerErrorsOptions { LogIntervalSeconds = seconds, LogLevel = level };

        Assert.False(Validator.TryValidateObject(options, new ValidationContext(options), [], validateAllProperties: true));
    }

    [Fact]
    public void ADetailAsLongAsARequestIsCut()
    {
        Log().Report("NotFound", Method, $"model '{new string('m', 1 << 20)}' not found");

        Assert.True(Assert.Single(_log.Entries).Message.Length < 500);
    }
}
