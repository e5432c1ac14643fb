namespace JacService.Client;

/// <summary>
/// Makes a request that a new connection never carried fail as a connection failure. SocketsHttpHandler reports a new
/// HTTP/2 connection that closed before it could take a single request (the server died between accept and its
/// SETTINGS) as a bare HttpRequestException, which Grpc.Net.Client maps to INTERNAL, so the retry policy, which
/// retries UNAVAILABLE only, gave up on a server that was restarting (RetryTests saw it in CI). An IOException inside
/// is what Grpc.Net.Client maps to UNAVAILABLE, as gRPC does every other connection failure. Errors with a cause
/// (refused connections, TLS, HTTP/2 resets) pass through unchanged.
/// </summary>
internal sealed class UnsentRequestHandler(HttpMessageHandler inner) : DelegatingHandler(inner)
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (e.InnerException is null && e.HttpRequestError == HttpRequestError.Unknown)
        {
            throw new HttpRequestException(HttpRequestError.ConnectionError, e.Message,
                new IOException("the connection closed before the request was sent", e));
        }
    }
}
