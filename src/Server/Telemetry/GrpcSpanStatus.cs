using System.Diagnostics;
using Grpc.Core;

namespace JacService.Server.Telemetry;

/// <summary>
/// The error status of a gRPC server span, as the RPC semantic conventions define it: only codes that say the
/// server failed are errors. A caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ...) is not.
/// </summary>
public static class GrpcSpanStatus
{
    private static readonly HashSet<StatusCode> ServerFaults =
    [
        StatusCode.Unknown, StatusCode.DeadlineExceeded, StatusCode.Unimplemented,
        StatusCode.Internal, StatusCode.Unavailable, StatusCode.DataLoss,
    ];

    public static bool IsServerFault(StatusCode code) => ServerFaults.Contains(code);

    /// <summary>Runs after the ASP.NET Core instrumentation has tagged the span, so its verdict is ours.</summary>
    public static void Apply(Activity activity)
    {
        if (CodeOf(activity) is not { } code) return;
        if (IsServerFault(code)) activity.SetStatus(ActivityStatusCode.Error, code.ToString());
        else activity.SetStatus(ActivityStatusCode.Unset);
    }

    // The instrumentation now follows the RPC conventions of semconv 1.42 and leaves the code as its name in
    // rpc.response.status_code ("INVALID_ARGUMENT"), removing the numeric rpc.grpc.status_code older versions set.
    private static StatusCode? CodeOf(Activity activity)
    {
        if (activity.GetTagItem("rpc.response.status_code") is string name
            && Enum.TryParse(name.Replace("_", ""), ignoreCase: true, out StatusCode named))
            return named;
        if (activity.GetTagItem("rpc.grpc.status_code") is { } tag && int.TryParse(tag.ToString(), out int value))
            return (StatusCode)value;
        return null;
    }
}
