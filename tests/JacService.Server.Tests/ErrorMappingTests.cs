using Grpc.Core;
using JacService.Core;
using JacService.Server.Grpc;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace JacService.Server.Tests;

/// <summary>The interceptor alone, in process: each exception the service can throw, and the status a client sees.</summary>
public class ErrorMappingTests
{
    /// <summary>Each exception, its status, and the retry pushback its answer carries (null: none, the client's own backoff).</summary>
    public static TheoryData<Type, StatusCode, string?> Mapped => new()
    {
        { typeof(InvalidRequestException), StatusCode.InvalidArgument, null },
        { typeof(NodeEvaluationException), StatusCode.InvalidArgument, null },
        { typeof(ResultTooLargeException), StatusCode.ResourceExhausted, "-1" },
        { typeof(PlanTooLargeException), StatusCode.ResourceExhausted, "-1" },
        { typeof(ExecutorBusyException), StatusCode.ResourceExhausted, null },
        { typeof(QuotaExceededException), StatusCode.ResourceExhausted, null },
        { typeof(CallMemoryExceededException), StatusCode.ResourceExhausted, null },
        { typeof(ModelNotFoundException), StatusCode.NotFound, null },
        { typeof(ModelUnavailableException), StatusCode.Unavailable, null },
        { typeof(ModelFailedException), StatusCode.FailedPrecondition, null },
        { typeof(QueueDeadlineExceededException), StatusCode.DeadlineExceeded, null },
        { typeof(BatcherStoppedException), StatusCode.Unavailable, null },
    };

    private readonly CapturingLogger<ErrorMappingInterceptor> _log = new();
    private readonly CapturingLogger<CallerErrorLog> _callerLog = new();
    private readonly CallerErrorLog _callerErrors;

    public ErrorMappingTests() => _callerErrors = new CallerErrorLog(Options.Create(new CallerErrorsOptions()), TimeProvider.System, _callerLog);

    [Theory]
    [MemberData(nameof(Mapped))]
    public async Task EachExceptionGetsItsStatusAndKeepsItsMessage(Type type, StatusCode code, string? retryPushback)
    {
        var thrown = Create(type, "expected shape [B, 3], got [2, 4]");

        var unary = await Assert.ThrowsAsync<RpcException>(() => Unary(thrown));
        var streaming = await Assert.ThrowsAsync<RpcException>(() => Streaming(thrown));

        foreach (var e in new[] { unary, streaming })
        {
            Assert.Equal(code, e.StatusCode);
            Assert.Equal(thrown.Message, e.Status.Detail);
            Assert.Equal(retryPushback, e.Trailers.GetValue("grpc-retry-pushback-ms"));
        }
        Assert.Empty(_log.Entries); // the caller's mistake or the server's load, not a bug to log
        // One line for the two calls: the second came within the interval.
        var line = Assert.Single(_callerLog.Entries);
        Assert.Equal(LogLevel.Information, line.Level);
        Assert.Null(line.Exception);
        Assert.StartsWith($"Caller error {code} in /jacservice.v1.JacobianService/Predict: {thrown.Message} (0 more", line.Message);
    }

    [Fact]
    public void EveryExceptionTheServerDefinesHasARow()
    {
        var rows = Mapped.Select(row => (Type)row[0]).ToHashSet();
        var defined = typeof(ErrorMappingInterceptor).Assembly.GetTypes().Where(t => t.IsSubclassOf(typeof(Exception)));
        Assert.All(defined, t => Assert.Contains(t, rows));
    }

    [Fact]
    public async Task AnUnexpectedExceptionIsInternalWithACorrelationIdAndNoDetails()
    {
        var bug = new InvalidOperationException("Collection was modified in /src/Server/Secret.cs line 42");

        var e = await Assert.ThrowsAsync<RpcException>(() => Unary(bug));

        Assert.Equal(StatusCode.Internal, e.StatusCode);
        Assert.DoesNotContain("Collection was modified", e.Status.Detail);
        Assert.DoesNotContain("Secret.cs", e.Status.Detail);
        var id = System.Text.RegularExpressions.Regex.Match(e.Status.Detail, @"correlation id ([0-9a-f]{12})").Groups[1].Value;
        Assert.NotEmpty(id);
        // The details are in the log, under the same id, so an operator can find them from the client's message.
        var entry = Assert.Single(_log.Entries);
        Assert.Equal(LogLevel.Error, entry.Level);
        Assert.Same(bug, entry.Exception);
        Assert.Contains(id, entry.Message);
    }

    [Fact]
    public async Task EachUnexpectedExceptionGetsItsOwnCorrelationId()
    {
        var first = await Assert.ThrowsAsync<RpcException>(() => Unary(new NullReferenceException()));
        var second = await Assert.ThrowsAsync<RpcException>(() => Unary(new NullReferenceException()));
        Assert.NotEqual(first.Status.Detail, second.Status.Detail);
    }

    [Theory]
    [InlineData(false, StatusCode.Cancelled)]
    [InlineData(true, StatusCode.DeadlineExceeded)]
    public async Task ACallThatEndedBeforeItRanIsCancelledOrPastItsDeadline(bool deadlinePassed, StatusCode code)
    {
        using var gone = new CancellationTokenSource();
        gone.Cancel();
        var context = new FakeCallContext(gone.Token, deadlinePassed ? DateTime.UtcNow.AddSeconds(-1) : DateTime.MaxValue);

        var e = await Assert.ThrowsAsync<RpcException>(() => Unary(new OperationCanceledException(gone.Token), context));

        Assert.Equal(code, e.StatusCode);
        Assert.Empty(_log.Entries);
    }

    /// <summary>
    /// A stream's reader learns of the client's RST_STREAM as Kestrel's IOException, with the call's token cancelled; the
    /// same exception while the client is still there is a failure of the server's, logged with its correlation id.
    /// </summary>
    [Theory]
    [InlineData(true, StatusCode.Cancelled)]
    [InlineData(false, StatusCode.Internal)]
    public async Task AStreamTheClientResetIsCancelledNotInternal(bool clientGone, StatusCode code)
    {
        using var gone = new CancellationTokenSource();
        if (clientGone) gone.Cancel();
        var context = new FakeCallContext(gone.Token, DateTime.MaxValue);

        var e = await Assert.ThrowsAsync<RpcException>(() => Unary(new IOException("The client reset the request stream."), context));

        Assert.Equal(code, e.StatusCode);
        Assert.Equal(clientGone ? 0 : 1, _log.Entries.Count);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheExceptionGoesOnTheSpanOnlyWhenTheSpanIsRecorded(bool recorded)
    {
        // ASP.NET Core starts an activity per request for its logs even when nothing records it; the exception event
        // formats the whole stack trace, a third of the server's CPU for rejected requests when it was always added.
        using var span = new System.Diagnostics.Activity("request");
        span.ActivityTraceFlags = recorded ? System.Diagnostics.ActivityTraceFlags.Recorded : System.Diagnostics.ActivityTraceFlags.None;
        span.Start();

        await Assert.ThrowsAsync<RpcException>(() => Unary(new InvalidRequestException("expected shape [B, 3], got [2, 4]")));

        Assert.Equal(recorded ? ["exception"] : [], span.Events.Select(e => e.Name));
    }

    private static Exception Create(Type type, string message) => type == typeof(NodeEvaluationException)
        ? new NodeEvaluationException("/layer1/MatMul", "MatMul", message)
        : (Exception)Activator.CreateInstance(type, message)!;

    private Task<string> Unary(Exception thrown, ServerCallContext? context = null) =>
        new ErrorMappingInterceptor(_log, _callerErrors).UnaryServerHandler<string, string>(
            "request", context ?? new FakeCallContext(), (_, _) => Task.FromException<string>(thrown));

    private Task Streaming(Exception thrown) =>
        new ErrorMappingInterceptor(_log, _callerErrors).ServerStreamingServerHandler<string, string>(
            "request", null!, new FakeCallContext(), (_, _, _) => Task.FromException(thrown));
}
