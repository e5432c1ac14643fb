using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using JacService.Server.Auth;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace JacService.Server.Admission;

/// <summary>
/// Reads the 5-byte prefix of a unary or server-streaming call's one message (a compressed flag and the length) before
/// grpc-dotnet reads the message, and holds its length in the <see cref="CallMemoryBudget"/> until the call has
/// answered, in a <see cref="CallMemory"/> the handler adds the result to. A call over the budget is refused with
/// RESOURCE_EXHAUSTED while its body is still unread: HTTP/2 flow control has let the client send one window (768 KiB on
/// Kestrel), not the message. JacobianStream's messages are held one by one as they are read (JacobianStreams).
/// A message that is held must then arrive within Limits:RequestReadTimeoutSeconds: what is held is the length its prefix
/// declares, not what has come, and Kestrel's MinRequestBodyDataRate (240 bytes/s) lets a client that sends a prefix of
/// 60 MB and then 300 bytes a second hold that share of the budget for days. The body grpc-dotnet then reads is a
/// <see cref="ClientResetBodyReader"/>.
/// </summary>
public sealed class CallMemoryMiddleware(RequestDelegate next, CallMemoryBudget budget, IOptions<LimitsOptions> limits, CallerErrorLog callerErrors,
    TimeProvider clock, JacServiceMetrics metrics)
{
    private const int PrefixBytes = 5;
    // How grpc-dotnet's refusal of a message over its receive limit begins (RequestSizeTests holds it to this).
    private const string InflatedPastTheLimit = "Received message exceeds the maximum configured message size";
    private readonly long _maxMessage = (long)limits.Value.MaxRequestMiB << 20;
    private readonly TimeSpan _readTimeout = TimeSpan.FromSeconds(limits.Value.RequestReadTimeoutSeconds);

    public async Task InvokeAsync(HttpContext context)
    {
        var method = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
        if (method?.Type is not (MethodType.Unary or MethodType.ServerStreaming))
        {
            await next(context);
            return;
        }
        var reader = context.Request.BodyReader;
        ReadResult read;
        try
        {
            read = await reader.ReadAtLeastAsync(PrefixBytes, context.RequestAborted);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            return; // the client went away before its message arrived; there is no one to answer
        }
        long wireBytes = MessageLength(read.Buffer, out bool compressed);
        bool arrived = read.IsCompleted || read.Buffer.Length >= PrefixBytes + wireBytes;
        // Nothing consumed: grpc-dotnet reads the same bytes next.
        reader.AdvanceTo(read.Buffer.Start);
        // No whole prefix: grpc-dotnet answers that itself, having read nothing more.
        if (wireBytes < 0)
        {
            await next(context);
            return;
        }
        // A compressed message's length says nothing of what it inflates to, up to Limits:MaxRequestMiB: that is held (and
        // grpc-dotnet refuses one that inflates past it).
        long bytes = compressed ? _maxMessage : wireBytes;
        if (bytes > _maxMessage)
        {
            Refuse(context, $"the request message of {bytes:N0} bytes is over Limits:MaxRequestMiB ({_maxMessage:N0} bytes); send fewer samples per request",
                retry: false);
            return;
        }
        using var memory = budget.Open();
        if (!memory.TryHold(bytes))
        {
            Refuse(context, budget.Refusal(bytes, "request message"), retry: true);
            return;
        }
        if (!arrived && _readTimeout > TimeSpan.Zero)
        {
            var (arrival, came) = await WaitForMessage(context, reader, PrefixBytes + wireBytes);
            if (arrival == Arrival.ClientGone) return;
            if (arrival == Arrival.Late)
            {
                metrics.RecordStalledMessage(method.Name, "request");
                Refuse(context, $"the request message of {wireBytes:N0} bytes did not arrive within {_readTimeout.TotalSeconds:0.###} s " +
                    $"(Limits:RequestReadTimeoutSeconds): {Math.Max(came - PrefixBytes, 0):N0} bytes came; send smaller requests",
                    retry: false);
                return;
            }
        }
        // The handler adds the result to the same hold (CallMemory.Of); all of it is let go once the response is written.
        context.Features.Set(memory);
        context.Features.Set<IRequestBodyPipeFeature>(new ClientResetBodyReader(reader, context, callerErrors));
        if (compressed) context.Response.OnStarting(MarkInflatedPastTheLimit, context.Response);
        await next(context);
    }

    /// <summary>
    /// grpc-dotnet refuses a compressed message that inflates past Limits:MaxRequestMiB itself, with RESOURCE_EXHAUSTED and
    /// nothing that tells a client not to retry: the mark the refusals above carry is added to its answer.
    /// </summary>
    private static Task MarkInflatedPastTheLimit(object state)
    {
        var headers = ((HttpResponse)state).Headers;
        if (headers["grpc-status"] == ((int)StatusCode.ResourceExhausted).ToString(CultureInfo.InvariantCulture)
            && headers["grpc-message"].ToString().StartsWith(InflatedPastTheLimit, StringComparison.Ordinal)
            && !headers.ContainsKey(GrpcRefusal.RetryPushbackHeader))
            headers[GrpcRefusal.RetryPushbackHeader] = "-1";
        return Task.CompletedTask;
    }

    /// <summary>The message's length on the wire, as its prefix says; -1 without a whole prefix.</summary>
    private static long MessageLength(ReadOnlySequence<byte> buffer, out bool compressed)
    {
        compressed = false;
        if (buffer.Length < PrefixBytes) return -1;
        Span<byte> prefix = stackalloc byte[PrefixBytes];
        buffer.Slice(0, PrefixBytes).CopyTo(prefix);
        compressed = prefix[0] != 0;
        return BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
    }

    private enum Arrival { InTime, Late, ClientGone }

    /// <summary>
    /// Waits, up to the timeout, for the whole message to be buffered, as grpc-dotnet does before it parses one: nothing
    /// is held that would not be anyway, and nothing is consumed. A message its client ends short of its length arrives
    /// here, and grpc-dotnet answers it. Late: how many bytes, prefix included, had come.
    /// </summary>
    private async Task<(Arrival, long Came)> WaitForMessage(HttpContext context, PipeReader reader, long wireBytes)
    {
        using var timeout = new CancellationTokenSource(_readTimeout, clock);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, context.RequestAborted);
        long came = 0;
        try
        {
            while (true)
            {
                var read = await reader.ReadAsync(either.Token);
                came = read.Buffer.Length;
                if (came >= wireBytes || read.IsCompleted)
                {
                    reader.AdvanceTo(read.Buffer.Start);
                    return (Arrival.InTime, came);
                }
                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            return (Arrival.Late, came);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            return (Arrival.ClientGone, 0);
        }
    }

    /// <param name="retry">False for a message no retry could make fit: its answer carries a negative retry pushback, as
    /// ErrorMappingInterceptor's answers for results too large do.</param>
    private void Refuse(HttpContext context, string message, bool retry)
    {
        callerErrors.Report(nameof(StatusCode.ResourceExhausted), context.Request.Path.Value ?? "", message);
        // A trailers-only gRPC answer: HTTP 200 with the status in the headers, as every gRPC error is sent.
        context.Response.StatusCode = StatusCodes.Status200OK;
        GrpcRefusal.Write(context.Response, StatusCode.ResourceExhausted, message);
        if (!retry) context.Response.Headers[GrpcRefusal.RetryPushbackHeader] = "-1";
    }
}
