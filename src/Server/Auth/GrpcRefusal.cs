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
    public static bool IsGrpc(HttpContext context) =>
        context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    public static void Write(HttpResponse response, StatusCode status, string message)
    {
        response.ContentType = "application/grpc";
        response.Headers["grpc-status"] = ((int)status).ToString();
        response.Headers["grpc-message"] = PercentEncode(message);
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
