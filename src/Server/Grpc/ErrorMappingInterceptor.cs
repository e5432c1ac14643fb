using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Http.Features;
using JacService.Core;
using JacService.Server.Admission;
using JacService.Server.Auth;
using JacService.Server.Telemetry;

namespace JacService.Server.Grpc;

/// <summary>
/// Turns engine and registry exceptions into gRPC status codes with the message that says what was expected and
/// what arrived. Anything unexpected becomes INTERNAL with a correlation id; the details go to the log only. The
/// rest are the caller's doing or the server's load, logged at most once per status per interval (CallerErrorLog).
/// </summary>
public sealed partial class ErrorMappingInterceptor(ILogger<ErrorMappingInterceptor> logger, CallerErrorLog callerErrors) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw ToRpcException(e, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw ToRpcException(e, context);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw ToRpcException(e, context);
        }
    }

    private RpcException ToRpcException(Exception e, ServerCallContext context) =>
        IsTooLargeToRetry(e) ? new(StatusOf(e, context), DoNotRetry) : new(StatusOf(e, context));

    /// <summary>
    /// RESOURCE_EXHAUSTED is transient (a full queue, the call memory budget, a quota) unless the call itself is too
    /// large, which no retry cures. Those say so in gRPC's own terms (gRFC A6): a negative retry pushback stops the
    /// retries of clients whose retry policy covers the code, as JacService's clients' does.
    /// </summary>
    internal static bool IsTooLargeToRetry(Exception e) => e is ResultTooLargeException or PlanTooLargeException;

    private static readonly Metadata DoNotRetry = new() { { GrpcRefusal.RetryPushbackHeader, "-1" } };

    /// <summary>
    /// The status a failed request gets, logged as the interceptor logs it; JacobianStream answers each of its
    /// messages with it, the unary and streaming calls end with it.
    /// </summary>
    public Status StatusOf(Exception e, ServerCallContext context)
    {
        if (e is OperationCanceledException or IOException && context.CancellationToken.IsCancellationRequested)
        {
            // Reset by the server for a client that stopped reading: already logged and counted where it was reset.
            if (CallHttpContext.Of(context)?.Features.Get<IHttpResponseBodyFeature>() is TimedResponseBody { Stalled: true } body)
                return ResponseWriteTimeoutMiddleware.StalledStatus(body.Timeout);
            // The client went away or its deadline passed; it will not read this status, but the log and metrics will. A
            // stream's reader learns of the client's reset as an IOException ("The client reset the request stream").
            return CallerError(context.Method, context.Deadline <= DateTime.UtcNow
                ? new Status(StatusCode.DeadlineExceeded, "the deadline passed before the request ran")
                : new Status(StatusCode.Cancelled, "the client cancelled the call"));
        }
        return StatusOf(e, context.Method);
    }

    /// <summary>
    /// The status of a failure other than the client leaving, for <paramref name="method"/> ("/package.Service/Method"):
    /// the caller's mistake or the server's load, logged at most once per status per interval, or INTERNAL with a
    /// correlation id and the details in the log. The Open Inference Protocol's REST binding answers its calls with it too.
    /// </summary>
    public Status StatusOf(Exception e, string method)
    {
        // The exception behind any non-OK status goes on the server span; the span's error status follows the code.
        Activity.Current.RecordException(e);
        if (Map(e) is { } code) return CallerError(method, new Status(code, Bounded(e.Message)));
        var id = Guid.NewGuid().ToString("N")[..12];
        LogInternalError(e, method, id);
        return new Status(StatusCode.Internal, $"internal error (correlation id {id}); the server log has the details");
    }

    // The status travels in a header (grpc-message, percent-encoded), and gRPC's C core refuses headers over 8 KiB
    // with RESOURCE_EXHAUSTED of its own. A message echoes what the caller sent, which can be as long as a request.
    private const int MaxDetailLength = 2000;

    private static string Bounded(string detail) =>
        detail.Length <= MaxDetailLength ? detail : $"{detail[..MaxDetailLength]}… (cut from {detail.Length} characters)";

    private Status CallerError(string method, Status status)
    {
        callerErrors.Report(status.StatusCode.ToString(), method, status.Detail);
        return status;
    }

    private static StatusCode? Map(Exception e) => e switch
    {
        InvalidRequestException => StatusCode.InvalidArgument,
        // An input the model cannot evaluate (e.g. a dynamic axis of a size its graph rejects) is the caller's to fix.
        NodeEvaluationException => StatusCode.InvalidArgument,
        ResultTooLargeException => StatusCode.ResourceExhausted,
        // The request's shapes (on a dynamic axis) would make the graph's values too big to plan.
        PlanTooLargeException => StatusCode.ResourceExhausted,
        ExecutorBusyException => StatusCode.ResourceExhausted,
        QuotaExceededException => StatusCode.ResourceExhausted,
        CallMemoryExceededException => StatusCode.ResourceExhausted,
        ModelNotFoundException => StatusCode.NotFound,
        ModelUnavailableException => StatusCode.Unavailable,
        ModelFailedException => StatusCode.FailedPrecondition,
        QueueDeadlineExceededException => StatusCode.DeadlineExceeded,
        BatcherStoppedException => StatusCode.Unavailable,
        _ => null,
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Internal error in {Method} (correlation id {CorrelationId})")]
    private partial void LogInternalError(Exception exception, string method, string correlationId);
}
