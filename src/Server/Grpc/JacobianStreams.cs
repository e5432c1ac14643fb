using System.Diagnostics;
using System.Threading.Channels;
using Grpc.Core;
using JacService.Core;
using JacService.Protos.V1;
using JacService.Server.Admission;
using JacService.Server.Execution;
using JacService.Server.Models;
using JacService.Server.Quotas;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Options;
using Wire = JacService.Protos.V1.Wire;

namespace JacService.Server.Grpc;

/// <summary>
/// JacobianStream: each message is a Jacobian request, validated and queued as it is read, so one stream's requests
/// are batched with each other and with everyone else's; answers go back in the order the requests came. A request
/// that fails is answered in its place with the status the error interceptor would give a unary Jacobian. Each
/// message is counted in jacservice.requests (method JacobianStream) and traced as a span of its own under the
/// stream's, so the queue and batch spans of one message hang off it as they hang off a unary call's. Each message and
/// its result hold their share of the call memory budget until the answer is written.
/// </summary>
public sealed class JacobianStreams(ModelRegistry registry, IOptions<LimitsOptions> limits, ErrorMappingInterceptor errors,
    JacServiceMetrics metrics, StreamMessageQuota quota, CallMemoryBudget memory)
{
    private const string Method = "JacobianStream";

    private static readonly HashSet<StatusCode> ServerFailures =
        [StatusCode.Unknown, StatusCode.DeadlineExceeded, StatusCode.Unimplemented, StatusCode.Internal, StatusCode.Unavailable, StatusCode.DataLoss];

    private readonly int _inFlight = limits.Value.MaxStreamRequestsInFlight;

    public async Task Run(IAsyncStreamReader<JacobianRequest> requests, IServerStreamWriter<Wire.JacobianStreamResponse> responses,
        ServerCallContext context)
    {
        // Answers in request order: the reader queues each request's answer as a task, the writer awaits them in turn.
        // The channel plus the answer the writer is waiting for are the stream's window: a full one stops the reader,
        // and HTTP/2 flow control the sender.
        var answers = Channel.CreateBounded<Task<Answered>>(new BoundedChannelOptions(_inFlight - 1)
        {
            SingleReader = true,
            SingleWriter = true,
        });
        var writing = WriteInOrder(answers.Reader, responses, context.CancellationToken);
        _ = writing.ContinueWith(_ => answers.Writer.TryComplete(), CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            try
            {
                long sequence = 0;
                while (await requests.MoveNext(context.CancellationToken))
                {
                    // Room first, so that a request is queued only inside the window. No room ever again once the writer
                    // has failed (nothing drains the window): stop reading.
                    if (!await answers.Writer.WaitToWriteAsync(context.CancellationToken)) break;
                    if (!answers.Writer.TryWrite(Answer(requests.Current, sequence, first: sequence == 0, context))) break;
                    sequence++;
                }
            }
            catch
            {
                // A message that does not parse: the answers already queued still go out, then the stream ends with the
                // parse error. Cancelled: the writer stops on the same token; the reader's exception is the one to report.
                answers.Writer.TryComplete();
                await writing.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                throw;
            }
            answers.Writer.TryComplete();
            await writing;
        }
        finally
        {
            // Reader and writer are done: what is left in the window will not be written, and holds its memory until computed.
            while (answers.Reader.TryRead(out var unwritten))
                _ = unwritten.ContinueWith(t => t.Result.Held.Dispose(), CancellationToken.None,
                    TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>A message's answer and its hold on the call memory budget, let go once the answer is written.</summary>
    private readonly record struct Answered(Wire.JacobianStreamResponse Response, CallMemory Held);

    private static async Task WriteInOrder(ChannelReader<Task<Answered>> answers,
        IServerStreamWriter<Wire.JacobianStreamResponse> responses, CancellationToken cancellation)
    {
        await foreach (var pending in answers.ReadAllAsync(cancellation))
        {
            var answered = await pending;
            using (answered.Held) await responses.WriteAsync(answered.Response, cancellation);
        }
    }

    // Never throws: every failure is the message's answer, so each Answered (and its hold) reaches the writer or the release.
    private async Task<Answered> Answer(JacobianRequest request, long sequence, bool first, ServerCallContext context)
    {
        long started = Stopwatch.GetTimestamp();
        using var span = JacServiceTelemetry.Source.StartActivity(JacServiceTelemetry.StreamMessageSpan);
        span?.SetTag(JacServiceTelemetry.Attributes.Model, CallerText.Clip(request.Model));
        span?.SetTag(JacServiceTelemetry.Attributes.StreamSequence, sequence);
        var answer = new Wire.JacobianStreamResponse { Sequence = sequence };
        // grpc-dotnet has read the message already: held from here until the answer is written. A refusal holds nothing.
        var held = memory.Open();
        try
        {
            if (!first && quota.Refusal(context) is { } refusal)
                throw new QuotaExceededException(refusal);
            held.Hold(request.CalculateSize(), "stream message");
            // Resolved per message: a reload between two messages serves the later one from the new version.
            using var call = JacobianCall.Prepare(registry, request.Model, request.Version, TensorMapping.FromProto(request.Inputs),
                request.Wrt, request.Of, request.Mode, batched: false);
            var result = await call.SubmitAsync(CallDeadline.Of(context), context.CancellationToken, held);
            answer.Result = JacobianGrpcService.SampleResponse(call.Model, result);
        }
        catch (Exception e)
        {
            var status = errors.StatusOf(e, context);
            answer.Code = (int)status.StatusCode;
            answer.Message = status.Detail;
            // As on server spans: only a code that means the server failed is an error of the span.
            if (ServerFailures.Contains(status.StatusCode)) span?.SetStatus(ActivityStatusCode.Error, status.Detail);
        }
        metrics.RecordRequest(request.Model, Method, RequestTelemetryInterceptor.StatusName((StatusCode)answer.Code),
            Stopwatch.GetElapsedTime(started).TotalSeconds);
        return new Answered(answer, held);
    }
}
