using Grpc.AspNetCore.Server;
using Grpc.Core;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace JacService.Server.Admission;

/// <summary>
/// Bounds how long one response message of a gRPC call may wait for its client to read it (Limits:ResponseWriteTimeoutSeconds).
/// Past it the call's stream is reset with ENHANCE_YOUR_CALM, which gRPC clients report as RESOURCE_EXHAUSTED: the
/// trailers cannot be sent, since they would wait behind the data the client does not take. The call then ends and lets
/// go of its share of the call memory budget.
/// </summary>
public sealed class ResponseWriteTimeoutMiddleware
{
    // HTTP/2's ENHANCE_YOUR_CALM (RFC 9113, section 7), which the gRPC protocol maps to RESOURCE_EXHAUSTED.
    private const int EnhanceYourCalm = 0xb;
    // Kestrel's default Limits:MaxResponseBufferSize, what a stream buffers before a flush waits for the client.
    private const long FlushAbove = 64 << 10;
    private readonly RequestDelegate _next;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _clock;
    private readonly CallerErrorLog _callerErrors;
    private readonly JacServiceMetrics _metrics;
    // One delegate for every call: each call's body carries its context and method.
    private readonly Action<TimedResponseBody> _reset;

    public ResponseWriteTimeoutMiddleware(RequestDelegate next, IOptions<LimitsOptions> limits, TimeProvider clock, CallerErrorLog callerErrors,
        JacServiceMetrics metrics)
    {
        _next = next;
        _timeout = TimeSpan.FromSeconds(limits.Value.ResponseWriteTimeoutSeconds);
        _clock = clock;
        _callerErrors = callerErrors;
        _metrics = metrics;
        _reset = Reset;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var method = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
        var original = context.Features.Get<IHttpResponseBodyFeature>();
        if (_timeout == TimeSpan.Zero || method is null || original is null)
        {
            await _next(context);
            return;
        }
        context.Features.Set<IHttpResponseBodyFeature>(new TimedResponseBody(context, method.Name, original, _timeout, _clock, _reset));
        try
        {
            await _next(context);
            await SendUnflushed(context.Response);
        }
        finally
        {
            context.Features.Set(original);
        }
    }

    /// <summary>
    /// grpc-dotnet leaves a unary call's answer unflushed, so that it goes out with the trailers when the response
    /// completes. Completing does not wait for the client, so Kestrel would hold an answer the client does not read for as
    /// long as the connection lasts, outside the call memory budget and any timeout. A large answer is flushed here
    /// instead, which waits for the client (timed), while CallMemoryMiddleware, around this one, still holds the call's
    /// memory; a small one, within Kestrel's own response buffer, still goes out in one write with the trailers.
    /// </summary>
    private static async Task SendUnflushed(HttpResponse response)
    {
        var writer = response.BodyWriter;
        if (writer.CanGetUnflushedBytes && writer.UnflushedBytes > FlushAbove) await writer.FlushAsync();
    }

    /// <summary>What a stalled call's handler ends with, if it is still running (a stream): the reason, not a cancellation.</summary>
    public static Status StalledStatus(TimeSpan timeout) => new(StatusCode.ResourceExhausted,
        $"a response message waited {timeout.TotalSeconds:0.###} s for the client to read it (Limits:ResponseWriteTimeoutSeconds); the call was reset");

    private void Reset(TimedResponseBody body)
    {
        var (context, method) = (body.Context, body.Method);
        _callerErrors.Report(nameof(StatusCode.ResourceExhausted), context.Request.Path.Value ?? method, StalledStatus(_timeout).Detail);
        _metrics.RecordStalledMessage(method, "response");
        if (context.Features.Get<IHttpResetFeature>() is { } reset) reset.Reset(EnhanceYourCalm);
        else context.Abort();
    }
}
