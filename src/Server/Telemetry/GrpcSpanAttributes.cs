using System.Diagnostics;
using Grpc.Core;

namespace JacService.Server.Telemetry;

/// <summary>
/// The ASP.NET Core instrumentation follows the RPC semantic conventions v1.41 (rpc.system.name, rpc.method as
/// "Service/Method", rpc.response.status_code as a name) and sets the error status by them: only codes that say the
/// server failed are errors. Dashboards built on the earlier conventions query rpc.system, rpc.service and
/// rpc.grpc.status_code, so those are added beside them.
/// </summary>
public static class GrpcSpanAttributes
{
    private static readonly Dictionary<string, int> CodesByName = Enum.GetValues<StatusCode>()
        .ToDictionary(c => c.ToString().Replace("_", ""), c => (int)c, StringComparer.OrdinalIgnoreCase);

    /// <summary>Runs after the instrumentation has tagged the span (its response callback).</summary>
    public static void AddEarlierConventions(Activity activity)
    {
        if (activity.GetTagItem("rpc.system.name") is not string system) return;
        activity.SetTag("rpc.system", system);
        if (activity.GetTagItem("rpc.method") is string method && method.LastIndexOf('/') is > 0 and var slash)
            activity.SetTag("rpc.service", method[..slash]);
        if (activity.GetTagItem("rpc.response.status_code") is string status && CodesByName.TryGetValue(status.Replace("_", ""), out int code))
            activity.SetTag("rpc.grpc.status_code", code);
    }
}
