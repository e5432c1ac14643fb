using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using Grpc.Core;
using JacService.Core;
using JacService.Server.Admission;
using JacService.Server.Auth;
using JacService.Server.Execution;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace JacService.Server.Inference;

/// <summary>
/// Answers the Open Inference Protocol's HTTP/REST binding (docs/open-inference.md): each route's JSON translated to the
/// gRPC binding's message, answered by <see cref="OpenInferenceCalls"/>, and translated back; tensors may also travel as
/// bytes after the JSON (Triton's binary tensor data extension, framed by Inference-Header-Content-Length). Errors are
/// the statuses the same call gets over gRPC, as HTTP statuses (<see cref="RestError"/>); every call is counted in
/// jacservice.requests as the gRPC method it stands for.
/// <para>
/// A request body is held in the call memory budget at its Content-Length (Limits:MaxRequestMiB where the client sends
/// none) before it is read, and must arrive within Limits:RequestReadTimeoutSeconds, as a gRPC message must.
/// </para>
/// </summary>
public sealed class OpenInferenceRest(OpenInferenceCalls calls, CallMemoryBudget budget, IOptions<LimitsOptions> limits, TimeProvider clock,
    JacServiceMetrics metrics, CallerErrorLog callerErrors, ErrorMappingInterceptor errors)
{
    private readonly long _maxBody = (long)limits.Value.MaxRequestMiB << 20;
    private readonly TimeSpan _readTimeout = TimeSpan.FromSeconds(limits.Value.RequestReadTimeoutSeconds);

    /// <summary>Nested data of a tensor of rank 32 and the objects around it; deeper JSON is refused as it is read.</summary>
    internal static readonly JsonDocumentOptions Parsing = new() { MaxDepth = 40 };

    /// <summary>The binary tensor data extension's header: the length of the JSON that begins a body holding binary data.</summary>
    public const string HeaderContentLength = "Inference-Header-Content-Length";

    public Task Live(HttpContext context) => Answer(context, "", () => Task.FromResult(StatusCode.OK));

    public Task Ready(HttpContext context) => Answer(context, "", () => Health(context, calls.ServerReady()));

    public Task ModelReady(HttpContext context)
    {
        var (model, version) = ModelOf(context);
        return Answer(context, model, () => Health(context, calls.ModelReady(model, version)));
    }

    public Task ServerMetadata(HttpContext context) =>
        Answer(context, "", () => Json(context, json => InferResponseJson.Write(json, calls.ServerMetadata())));

    public Task ModelMetadata(HttpContext context)
    {
        var (model, version) = ModelOf(context);
        return Answer(context, model, () =>
        {
            var metadata = calls.ModelMetadata(model, version);
            return Json(context, json => InferResponseJson.Write(json, metadata));
        });
    }

    public Task Infer(HttpContext context)
    {
        var (model, version) = ModelOf(context);
        return Answer(context, model, async () =>
        {
            // Held until the response is written: the body, then the result the call adds (OpenInferenceCalls).
            using var memory = budget.Open();
            var (body, length, refusal) = await ReadBody(context, memory);
            if (refusal is not null) return await Refuse(context, refusal);
            try
            {
                // The request's binary inputs point into the body: it goes back to the pool only once the call is done.
                var request = InferRequestJson.Read(body.AsMemory(0, length), HeaderLength(context.Request), model, version);
                var response = await calls.ModelInfer(request, deadline: null, context.RequestAborted, memory, rawOutputs: true);
                await WriteResponse(context.Response, response, InferResponseJson.BinaryOutputs(request, response), context.RequestAborted);
                return StatusCode.OK;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(body);
            }
        });
    }

    /// <summary>
    /// JSON alone, or (any output binary) the JSON, its length in Inference-Header-Content-Length, then each binary output's
    /// bytes in order. That length is found by writing the JSON once uncounted before it is sent, rather than by holding it
    /// whole: outputs asked for as JSON beside binary ones are formatted twice, but the answer never sits in memory as text.
    /// </summary>
    private static async Task WriteResponse(HttpResponse http, Protos.Inference.ModelInferResponse response, bool[] binary, CancellationToken cancellation)
    {
        if (!binary.Contains(true))
        {
            http.ContentType = "application/json";
            await InferResponseJson.WriteAsync(http.BodyWriter, response, binary, cancellation);
            return;
        }
        var counted = new ByteCountingStream();
        var pipe = PipeWriter.Create(counted);
        await InferResponseJson.WriteAsync(pipe, response, binary, cancellation);
        await pipe.CompleteAsync();
        http.ContentType = "application/octet-stream";
        http.Headers[HeaderContentLength] = counted.Length.ToString(CultureInfo.InvariantCulture);
        http.ContentLength = counted.Length + Enumerable.Range(0, binary.Length).Where(i => binary[i]).Sum(i => (long)response.RawOutputContents[i].Length);
        await InferResponseJson.WriteAsync(http.BodyWriter, response, binary, cancellation);
        for (int i = 0; i < binary.Length; i++)
            if (binary[i]) await http.BodyWriter.WriteAsync(response.RawOutputContents[i].Memory, cancellation);
    }

    /// <summary>The binary tensor data extension's header: where the body's JSON ends, or null where the body is all JSON.</summary>
    private static long? HeaderLength(HttpRequest request)
    {
        var values = request.Headers[HeaderContentLength];
        if (values.Count == 0) return null;
        return values.Count == 1 && long.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out long length)
            ? length
            : throw new InvalidRequestException($"{HeaderContentLength} is '{values}'; expected the length of the body's JSON in bytes");
    }

    /// <summary>
    /// The whole body in a pooled array, or why it was refused as it came: refusals of the REST binding's own, with their
    /// HTTP status. The array goes back to the pool when the call is done with it.
    /// </summary>
    private async Task<(byte[] Body, int Length, Refusal? Refusal)> ReadBody(HttpContext context, CallMemory memory)
    {
        // Compressed bodies (Triton takes gzip and deflate) are not served: said so, rather than parsed as JSON that fails.
        var encoding = context.Request.Headers.ContentEncoding;
        if (encoding.Count > 0 && !(encoding.Count == 1 && string.Equals(encoding[0], "identity", StringComparison.OrdinalIgnoreCase)))
        {
            context.Response.Headers.AcceptEncoding = "identity";
            return ([], 0, new Refusal(StatusCodes.Status415UnsupportedMediaType, StatusCode.InvalidArgument,
                $"the request body has Content-Encoding '{encoding}', which is not served; send it uncompressed"));
        }
        long? declared = context.Request.ContentLength;
        if (declared > _maxBody) return ([], 0, TooLarge($"the request body of {declared:N0} bytes"));
        memory.Hold(declared ?? _maxBody, "request body");
        using var timeout = new CancellationTokenSource(_readTimeout > TimeSpan.Zero ? _readTimeout : Timeout.InfiniteTimeSpan, clock);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, context.RequestAborted);
        // A declared length is read into an array of that size (and one byte for the end); a chunked body into one that
        // doubles as it fills.
        byte[] body = ArrayPool<byte>.Shared.Rent((int)(declared + 1 ?? 64 << 10));
        int length = 0;
        bool kept = false;
        try
        {
            while (true)
            {
                if (length == body.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(2L * body.Length, _maxBody + 1));
                    body.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(body);
                    body = larger;
                }
                int read = await context.Request.Body.ReadAsync(body.AsMemory(length), either.Token);
                if (read == 0)
                {
                    kept = true;
                    return (body, length, null);
                }
                length += read;
                if (length > _maxBody) return ([], 0, TooLarge("the request body, sent in chunks,"));
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            return ([], 0, Stalled());
        }
        // Kestrel's own refusals of a body (one sent in chunks past its limit, a malformed chunk), with their HTTP status.
        catch (BadHttpRequestException e)
        {
            return ([], 0, new Refusal(e.StatusCode, e.StatusCode == StatusCodes.Status413PayloadTooLarge ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument,
                $"the request body could not be read: {e.Message}"));
        }
        finally
        {
            if (!kept) ArrayPool<byte>.Shared.Return(body);
        }
    }

    private Refusal TooLarge(string what) => new(StatusCodes.Status413PayloadTooLarge, StatusCode.ResourceExhausted,
        $"{what} is over Limits:MaxRequestMiB ({_maxBody:N0} bytes); send fewer samples per request");

    private Refusal Stalled()
    {
        metrics.RecordStalledMessage("ModelInfer", "request");
        return new Refusal(StatusCodes.Status408RequestTimeout, StatusCode.ResourceExhausted,
            $"the request body did not arrive within {_readTimeout.TotalSeconds:0.###} s (Limits:RequestReadTimeoutSeconds); send smaller requests");
    }

    private static (string Model, string Version) ModelOf(HttpContext context) =>
        ((string)context.GetRouteValue("model")!, context.GetRouteValue("version") as string ?? "");

    /// <summary>The protocol's health answers: 200 for true, 400 for false, no body.</summary>
    private static Task<StatusCode> Health(HttpContext context, bool healthy)
    {
        context.Response.StatusCode = healthy ? StatusCodes.Status200OK : StatusCodes.Status400BadRequest;
        return Task.FromResult(StatusCode.OK);
    }

    private static async Task<StatusCode> Json(HttpContext context, Action<Utf8JsonWriter> write)
    {
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.BodyWriter, InferResponseJson.Writing);
        write(json);
        return StatusCode.OK;
    }

    /// <summary>Runs a call, answers its failure with the status the gRPC binding would give it, and counts it.</summary>
    private async Task Answer(HttpContext context, string model, Func<Task<StatusCode>> call)
    {
        long started = Stopwatch.GetTimestamp();
        string method = OpenInferenceRoute.Of(context)!.Name;
        StatusCode status;
        try
        {
            status = await call();
        }
        catch (Exception e)
        {
            status = await Fail(context, e);
        }
        metrics.RecordRequest(model, method, RequestTelemetryInterceptor.StatusName(status), Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    private async Task<StatusCode> Fail(HttpContext context, Exception e)
    {
        if (e is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: it reads no answer, but the log and metrics do.
            callerErrors.Report(nameof(StatusCode.Cancelled), RpcGroups.MethodOf(context), "the client closed the connection");
            return StatusCode.Cancelled;
        }
        // The status, message and logging the gRPC binding's call would get.
        var status = errors.StatusOf(e, RpcGroups.MethodOf(context));
        // Transient exhaustion (a full queue, the budget) may be retried; a call too large for any retry says so by its status.
        int http = ErrorMappingInterceptor.IsTooLargeToRetry(e) ? StatusCodes.Status413PayloadTooLarge : RestError.HttpStatusOf(status.StatusCode);
        await RestError.WriteAsync(context.Response, http, status.Detail);
        return status.StatusCode;
    }

    /// <summary>A refusal of the REST binding's own: logged as a caller error, answered with its HTTP status.</summary>
    private async Task<StatusCode> Refuse(HttpContext context, Refusal refusal)
    {
        callerErrors.Report(refusal.Status.ToString(), RpcGroups.MethodOf(context), refusal.Message);
        await RestError.WriteAsync(context.Response, refusal.Http, refusal.Message);
        return refusal.Status;
    }

    /// <summary>A refused call: its HTTP status, the gRPC status metrics and logs name it by, and what the caller is told.</summary>
    private sealed record Refusal(int Http, StatusCode Status, string Message);
}
