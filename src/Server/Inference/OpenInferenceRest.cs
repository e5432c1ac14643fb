using System.Diagnostics;
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
/// gRPC binding's message, answered by <see cref="OpenInferenceCalls"/>, and translated back. Errors are the statuses
/// the same call gets over gRPC, as HTTP statuses (<see cref="RestError"/>); every call is counted in
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
            var (request, refusal) = await ReadRequest(context, memory, model, version);
            if (refusal is not null) return await Refuse(context, refusal);
            var response = await calls.ModelInfer(request!, deadline: null, context.RequestAborted, memory);
            context.Response.ContentType = "application/json";
            await InferResponseJson.WriteAsync(context.Response.BodyWriter, response, context.RequestAborted);
            return StatusCode.OK;
        });
    }

    /// <summary>The request, or why the body was refused as it came: refusals of the REST binding's own, with their HTTP status.</summary>
    private async Task<(Protos.Inference.ModelInferRequest?, Refusal?)> ReadRequest(HttpContext context, CallMemory memory, string model, string version)
    {
        long? length = context.Request.ContentLength;
        if (length > _maxBody)
            return (null, new Refusal(StatusCodes.Status413PayloadTooLarge, StatusCode.ResourceExhausted,
                $"the request body of {length:N0} bytes is over Limits:MaxRequestMiB ({_maxBody:N0} bytes); send fewer samples per request"));
        memory.Hold(length ?? _maxBody, "request body");
        using var timeout = new CancellationTokenSource(_readTimeout > TimeSpan.Zero ? _readTimeout : Timeout.InfiniteTimeSpan, clock);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, context.RequestAborted);
        try
        {
            using var body = await JsonDocument.ParseAsync(context.Request.Body, Parsing, either.Token);
            return (InferRequestJson.Read(body.RootElement, model, version), null);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            metrics.RecordStalledMessage("ModelInfer", "request");
            return (null, new Refusal(StatusCodes.Status408RequestTimeout, StatusCode.ResourceExhausted,
                $"the request body did not arrive within {_readTimeout.TotalSeconds:0.###} s (Limits:RequestReadTimeoutSeconds); send smaller requests"));
        }
        catch (JsonException e)
        {
            throw new InvalidRequestException($"the request body is not valid JSON: {e.Message}");
        }
        // Kestrel's own refusals of a body (one sent in chunks past its limit, a malformed chunk), with their HTTP status.
        catch (BadHttpRequestException e)
        {
            return (null, new Refusal(e.StatusCode, e.StatusCode == StatusCodes.Status413PayloadTooLarge ? StatusCode.ResourceExhausted : StatusCode.InvalidArgument,
                $"the request body could not be read: {e.Message}"));
        }
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
