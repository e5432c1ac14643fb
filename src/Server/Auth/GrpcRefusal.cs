using System.Diagnostics;
using System.Text;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Auth;

/// <summary>
/// Turns a response the middleware refused into a gRPC answer: a trailers-only response whose grpc-status and
/// grpc-message sit in the headers. Without them a gRPC client sees only the HTTP status and a message like "Bad gRPC
/// response. HTTP status code: 401".
/// </summary>
public static class GrpcRefusal
{
    /// <summary>gRPC's retry hint (gRFC A6): milliseconds to wait before the next attempt, or a negative number for none.</summary>
    public const string RetryPushbackHeader = "grpc-retry-pushback-ms";

    public static bool IsGrpc(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    public static void Write(HttpResponse response, StatusCode status, string message)
    {
        response.ContentType = "application/grpc";
        response.Headers["grpc-status"] = ((int)status).ToString();
        response.Headers["grpc-message"] = PercentEncode(message);
        // The instrumentation names the gRPC status only of calls that reached grpc-dotnet; dashboards that count
        // refusals by status would otherwise see these as HTTP 401, 403 or 200.
        Activity.Current?.SetTag("rpc.response.status_code", WireName(status));
        Activity.Current?.SetTag("rpc.grpc.status_code", (int)status);
    }

    // UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED: as gRPC spells them.
    private static string WireName(StatusCode status)
    {
        var name = status.ToString();
        return string.Concat(name.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : c.ToString())).ToUpperInvariant();
    }

    /// <summary>gRPC's encoding of grpc-message: UTF-8, with bytes outside printable ASCII and '%' as %XX.</summary>
    private static string PercentEncode(string message)
    {
        var text = new StringBuilder(message.Length);
        foreach (byte b in Encoding.UTF8.GetBytes(message))
            if (b is >= 0x20 and <= 0x7E and not (byte)'%') text.Append((char)b);
            else text.Append('%').Append(b.ToString("X2"));
        return text.ToString();
    }
}
