using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using JacService.Protos.V1;

namespace JacService.Server.Telemetry;

/// <summary>
/// Counts every RPC and its duration by model, method and final gRPC status. Registered outside the error
/// interceptor, so it sees the status the caller gets.
/// </summary>
public sealed class RequestTelemetryInterceptor(JacServiceMetrics metrics) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            var response = await continuation(request, context);
            Record(request, context, StatusCode.OK, started);
            return response;
        }
        catch (Exception e) when (Record(request, context, StatusOf(e), started))
        {
            throw; // not reached: Record returns false, so the filter only observes the exception
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(request, responseStream, context);
            Record(request, context, StatusCode.OK, started);
        }
        catch (Exception e) when (Record(request, context, StatusOf(e), started))
        {
            throw; // not reached, as above
        }
    }

    private bool Record(object request, ServerCallContext context, StatusCode status, long started)
    {
        if (IsServiceCall(context))
            metrics.RecordRequest(ModelOf(request), MethodOf(context), StatusName(status), Stopwatch.GetElapsedTime(started).TotalSeconds);
        return false;
    }

    // The error interceptor inside this one turns every failure into an RpcException; anything else is a bug.
    private static StatusCode StatusOf(Exception e) => e is RpcException rpc ? rpc.StatusCode : StatusCode.Unknown;

    // Health checks (probes every few seconds) and reflection are infrastructure, not traffic; they are not traced either.
    private static bool IsServiceCall(ServerCallContext context) => !context.Method.StartsWith("/grpc.", StringComparison.Ordinal);

    private static string ModelOf(object request) => request is IModelRequest r ? r.Model : "";

    // "/jacservice.v1.JacobianService/Predict" -> "Predict"
    private static string MethodOf(ServerCallContext context) => context.Method[(context.Method.LastIndexOf('/') + 1)..];

    private static readonly Dictionary<StatusCode, string> StatusNames =
        Enum.GetValues<StatusCode>().ToDictionary(c => c, GrpcStatusName);

    internal static string StatusName(StatusCode code) => StatusNames[code];

    // The names gRPC uses on the wire and in its documentation: INVALID_ARGUMENT, not InvalidArgument. A word
    // starts at an upper-case letter after a lower-case one, so OK stays OK.
    private static string GrpcStatusName(StatusCode code)
    {
        var name = code.ToString();
        return string.Concat(name.Select((c, i) => i > 0 && char.IsUpper(c) && char.IsLower(name[i - 1]) ? "_" + c : c.ToString())).ToUpperInvariant();
    }
}
