using Grpc.Core;
using Grpc.Net.Client;
using JacService.Client;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// A new HTTP/2 connection that closes before it carries the request (the server died between accept and its
/// SETTINGS) must be retried like any other connection failure. SocketsHttpHandler reports that as a bare
/// HttpRequestException only when the close wins a race with the request (RetryTests' stream test lost it once in CI),
/// so here a handler under the channel's own throws that exception itself, as SocketsHttpHandler does, before passing
/// requests on to a real connection to the test server.
/// </summary>
[Collection(ServerCollection.Name)]
public class UnsentRequestTests(ServerProcess server)
{
    [Fact]
    public async Task ARequestNoConnectionCarriedIsRetried()
    {
        var dying = new DyingConnections(failures: 2);
        var stub = Stub(new UnsentRequestHandler(dying));

        var response = await stub.ListModelsAsync(new ListModelsRequest());

        Assert.Contains(response.Models, m => m.Name == "mlp_tanh");
        Assert.Equal(3, dying.Requests);
    }

    [Fact]
    public async Task WithoutTheHandlerTheSameFailureIsInternalAndNotRetried()
    {
        var dying = new DyingConnections(failures: 2);
        var stub = Stub(dying);

        var e = await Assert.ThrowsAsync<RpcException>(() => stub.ListModelsAsync(new ListModelsRequest()).ResponseAsync);

        Assert.Equal(StatusCode.Internal, e.StatusCode);
        Assert.Equal(1, dying.Requests);
    }

    private JacobianService.JacobianServiceClient Stub(HttpMessageHandler handler)
    {
        var options = new JacServiceClientOptions { Address = new Uri($"http://{server.Target}"), InitialBackoff = TimeSpan.FromMilliseconds(20) };
        var channel = new GrpcChannelOptions { HttpHandler = handler };
        JacServiceChannel.Configure(channel, options);
        return new JacobianService.JacobianServiceClient(GrpcChannel.ForAddress(options.Address, channel));
    }

    /// <summary>Fails its first requests as SocketsHttpHandler fails one a new connection could not carry.</summary>
    private sealed class DyingConnections(int failures) : DelegatingHandler(new SocketsHttpHandler())
    {
        private int _requests;

        public int Requests => Volatile.Read(ref _requests);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Interlocked.Increment(ref _requests) <= failures
                ? throw new HttpRequestException("An HTTP/2 connection could not be established because the server did not complete the HTTP/2 handshake.")
                : base.SendAsync(request, cancellationToken);
    }
}
