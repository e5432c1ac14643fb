using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Inference;

/// <summary>
/// An error answer of the Open Inference Protocol's HTTP/REST binding: the HTTP status for the gRPC status the same call
/// gets over gRPC (as grpc-gateway maps them; 4xx the caller's, 5xx the server's), and the body the protocol gives
/// errors, {"error": "message"}.
/// </summary>
public static class RestError
{
    public static int HttpStatusOf(StatusCode code) => code switch
    {
        StatusCode.OK => StatusCodes.Status200OK,
        StatusCode.InvalidArgument or StatusCode.FailedPrecondition or StatusCode.OutOfRange => StatusCodes.Status400BadRequest,
        StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
        StatusCode.NotFound => StatusCodes.Status404NotFound,
        StatusCode.AlreadyExists or StatusCode.Aborted => StatusCodes.Status409Conflict,
        StatusCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
        // nginx's "client closed request": no one reads it, but logs and metrics do.
        StatusCode.Cancelled => 499,
        StatusCode.Unimplemented => StatusCodes.Status501NotImplemented,
        StatusCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        StatusCode.DeadlineExceeded => StatusCodes.Status504GatewayTimeout,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>Answers with <paramref name="httpStatus"/> and the message, unless the response has begun.</summary>
    public static async Task WriteAsync(HttpResponse response, int httpStatus, string message)
    {
        if (response.HasStarted) return;
        response.StatusCode = httpStatus;
        response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(response.BodyWriter, InferResponseJson.Writing);
        json.WriteStartObject();
        json.WriteString("error", message);
        json.WriteEndObject();
    }

    public static Task WriteAsync(HttpResponse response, StatusCode code, string message) => WriteAsync(response, HttpStatusOf(code), message);
}
