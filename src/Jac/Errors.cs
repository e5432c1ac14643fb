using System.Net.Sockets;
using System.Security.Authentication;
using Grpc.Core;
using JacService.Protos.V1;

namespace JacService.Jac;

public static class Errors
{
    /// <summary>
    /// Turns a failed call into a sentence that says what to do. For NOT_FOUND it asks the server which models it
    /// has, since a typo is the usual cause.
    /// </summary>
    public static async Task<JacException> ExplainAsync(RpcException e, Connection connection, string? model)
    {
        if (Find<AuthenticationException>(e.Status.DebugException) is { } tls)
            return new JacException($"TLS with {connection.Address} failed: {tls.Message} " +
                "Give --ca with the CA that issued the server's certificate, and a --target whose name the certificate holds");
        // With TLS 1.3 a client certificate is checked after the client's side of the handshake is done: the refusal
        // arrives as a connection closed before any answer, not as a TLS error. Usually gRPC reports that as UNAVAILABLE;
        // when the client had already sent its request it is INTERNAL ("Error starting gRPC call", seen once in CI).
        if (ClosedBeforeAnswering(e) && connection.Address.StartsWith("https://", StringComparison.Ordinal) && !IsSocketError(e))
            return new JacException($"{connection.Address} closed the connection during the handshake. " +
                "A server that requires client certificates does so to a caller without one, or with one its CA did not issue: give --cert and --key");
        if (IsUnreachable(e))
            return new JacException($"cannot reach a JacService server at {connection.Address} ({Reason(e)}). " +
                "Is it running? Start one with: dotnet run --project src/Server -c Release, or pass --target HOST:PORT");
        if (e.StatusCode == StatusCode.NotFound && model is not null)
        {
            string known = "";
            try
            {
                var list = await connection.Client.ListModelsAsync(new ListModelsRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                var names = list.Models.Select(m => m.Name).Distinct().Order().ToList();
                // The server's message may list them already; say it once.
                if (!names.Any(n => e.Status.Detail.Contains(n, StringComparison.Ordinal))) known = $" Models there: {string.Join(", ", names)}";
            }
            catch (RpcException)
            {
                // The message stays useful without the list.
            }
            return new JacException($"model '{model}' not found at {connection.Address}: {e.Status.Detail}.{known}");
        }
        return e.StatusCode switch
        {
            StatusCode.InvalidArgument => new JacException($"the server refused the request: {e.Status.Detail}"),
            StatusCode.DeadlineExceeded => new JacException($"no answer within the deadline (--timeout): {e.Status.Detail}"),
            StatusCode.Unauthenticated => new JacException(
                $"the server wants credentials ({e.Status.Detail}): give a token (--token-file, {Credentials.TokenVariable} or --token) or an API key (--api-key-file, {Credentials.ApiKeyVariable} or --api-key)"),
            StatusCode.PermissionDenied => new JacException($"the server refused these credentials for this call: {e.Status.Detail}"),
            _ => new JacException($"{e.StatusCode}: {e.Status.Detail}"),
        };
    }

    /// <summary>No server listening (or no route to it), as opposed to a server that answered UNAVAILABLE itself.</summary>
    public static bool IsUnreachable(RpcException e) =>
        e.StatusCode == StatusCode.Unavailable && (e.Status.DebugException is HttpRequestException or SocketException
            || e.Status.DebugException?.InnerException is SocketException);

    /// <summary>The connection failed before the server sent response headers (the handler's request failed).</summary>
    private static bool ClosedBeforeAnswering(RpcException e) =>
        IsUnreachable(e) || e.StatusCode == StatusCode.Internal && Find<HttpRequestException>(e.Status.DebugException) is not null;

    private static bool IsSocketError(RpcException e) =>
        e.Status.DebugException is SocketException || e.Status.DebugException?.InnerException is SocketException;

    private static T? Find<T>(Exception? e) where T : Exception =>
        e is null ? null : e as T ?? Find<T>(e.InnerException);

    private static string Reason(RpcException e) =>
        (e.Status.DebugException?.InnerException as SocketException)?.Message
        ?? e.Status.DebugException?.Message ?? e.Status.Detail;
}
