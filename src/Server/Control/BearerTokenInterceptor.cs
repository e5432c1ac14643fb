using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;

namespace JacService.Server.Control;

/// <summary>
/// Lets a ModelControl call through only with the metadata `authorization: Bearer &lt;token&gt;` holding the server's
/// token: none is UNAUTHENTICATED, another is PERMISSION_DENIED. Registered on the ModelControl service alone. An
/// interceptor rather than ASP.NET Core's authentication: that answers HTTP 401 for a missing and a wrong credential
/// alike, and callers need to tell "send a token" from "this token is not accepted". Neither the token nor what a
/// caller sent appears in a status message or a log line.
/// </summary>
public sealed partial class BearerTokenInterceptor : Interceptor
{
    private const string Scheme = "Bearer ";
    private readonly byte[] _expectedHash;
    private readonly ILogger<BearerTokenInterceptor> _logger;

    public BearerTokenInterceptor(IOptions<ModelControlOptions> options, ILogger<BearerTokenInterceptor> logger)
    {
        // Hashes compared, not the texts: FixedTimeEquals returns at once on a length mismatch, which would tell a
        // guesser the token's length; both hashes have 32 bytes.
        _expectedHash = SHA256.HashData(Encoding.ASCII.GetBytes(options.Value.ResolvedToken));
        _logger = logger;
    }

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Check(ServerCallContext context)
    {
        var header = context.RequestHeaders.GetValue("authorization");
        if (header is null || !header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || header.Length == Scheme.Length)
        {
            LogRefused(context.Method, context.Peer, "no bearer token");
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "ModelControl calls need the metadata 'authorization: Bearer <token>' with the server's ModelControl token"));
        }
        var offered = SHA256.HashData(Encoding.UTF8.GetBytes(header[Scheme.Length..].Trim()));
        if (!CryptographicOperations.FixedTimeEquals(offered, _expectedHash))
        {
            LogRefused(context.Method, context.Peer, "a bearer token that is not the server's");
            throw new RpcException(new Status(StatusCode.PermissionDenied, "the bearer token is not the server's ModelControl token"));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused {Method} from {Peer}: {Why}")]
    private partial void LogRefused(string method, string peer, string why);
}
