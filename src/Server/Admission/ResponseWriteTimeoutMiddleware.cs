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
public sealed class ResponseWriteTimeoutMiddleware(RequestDelegate next, IOptions<LimitsOptions> limits, TimeProvider clock,
    CallerErrorLog callerErrors, JacServiceMetrics metrics)
{
    // HTTP/2's ENHANCE_YOUR_CALM (RFC 9113, section 7), which the gRPC protocol maps to RESOURCE_EXHAUSTED.
    private const int EnhanceYourCalm = 0xb;
    // Kestrel's default Limits:MaxResponseBufferSize, what a stream buffers before a flush waits for the client.
    private const long FlushAbove = 64 << 10;
    private readonly TimeSpan _timeout = TimeSpan.FromSeconds(limits.Value.ResponseWriteTimeoutSeconds);

    public async Task InvokeAsync(HttpContext context)
    {
        var method = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
        var original = context.Features.Get<IHttpResponseBodyFeature>();
        if (_timeout == TimeSpan.Zero || method is null || original is null)
        {
            await next(context);
            return;
        }
        context.Features.Set<IHttpResponseBodyFeature>(new TimedResponseBody(original, _timeout, clock, _ => Reset(context, method.Name)));
        try
        {
            await next(context);
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

    private void Reset(HttpContext context, string method)
    {
        callerErrors.Report(nameof(StatusCode.ResourceExhausted), context.Request.Path.Value ?? method, StalledStatus(_timeout).Detail);
        metrics.RecordStalledMessage(method, "response");
        if (context.Features.Get<IHttpResetFeature>() is { } reset) reset.Reset(EnhanceYourCalm);
        else context.Abort();
    }
}
