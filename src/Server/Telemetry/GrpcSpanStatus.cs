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
        if (activity.GetTagItem("rpc.grpc.status_code") is not { } tag || !int.TryParse(tag.ToString(), out int value)) return;
        var code = (StatusCode)value;
        if (IsServerFault(code)) activity.SetStatus(ActivityStatusCode.Error, code.ToString());
        else activity.SetStatus(ActivityStatusCode.Unset);
    }
}
