using Grpc.Core;
using JacService.Testing;
using static JacService.Integration.Tests.ClientTesting;

namespace JacService.Integration.Tests;

/// <summary>UNAVAILABLE is retried by the channel's service config, so a call outlives a server briefly down.</summary>
[Collection(ServerCollection.Name)]
public class RetryTests(ServerProcess server)
{
    [Fact]
    public async Task ACallSucceedsOnceTheServerIsBack()
    {
        await using var proxy = new FlakyProxy(server.Port, resets: 2);
        var client = ClientFor(proxy.Address, o =>
        {
            o.MaxAttempts = 5;
            o.InitialBackoff = TimeSpan.FromMilliseconds(50);
            o.MaxBackoff = TimeSpan.FromMilliseconds(200);
        });
        var reference = Fixtures.Load("pinn");

        var result = await client.BatchJacobianAsync("pinn", Inputs(reference));

        Close(reference.Jacobians["xt"]["u"], result.Jacobians["u"], "pinn du/dxt");
        Assert.True(proxy.Connections >= 3, $"{proxy.Connections} connections");
    }

    /// <summary>
    /// More failed connections than gRPC's attempts (5): the policy alone gives up, the library tries again. Or streams
    /// reset at the HTTP/2 level, INTERNAL rather than UNAVAILABLE, which the policy does not retry at all: a server
    /// killed behind a proxy can end calls that way (CrashRecoveryTests saw one).
    /// </summary>
    [Theory]
    [InlineData(12, false)]
    [InlineData(3, true)]
    public async Task RetryingUntilTheDeadlineOutlastsTheRetryPolicy(int failures, bool resetStreams)
    {
        await using var proxy = new FlakyProxy(server.Port, failures, resetStreams);
        var client = ClientFor(proxy.Address, o =>
        {
            o.InitialBackoff = TimeSpan.FromMilliseconds(20);
            o.MaxBackoff = TimeSpan.FromMilliseconds(100);
            o.RetryUntilDeadline = true;
        });
        var reference = Fixtures.Load("pinn");

        var result = await client.BatchJacobianAsync("pinn", Inputs(reference));

        Close(reference.Jacobians["xt"]["u"], result.Jacobians["u"], "pinn du/dxt");
        Assert.True(proxy.Connections > failures, $"{proxy.Connections} connections");
    }

    [Fact]
    public async Task AStreamSucceedsOnceTheServerIsBack()
    {
        await using var proxy = new FlakyProxy(server.Port, resets: 2);
        var client = ClientFor(proxy.Address, o => o.InitialBackoff = TimeSpan.FromMilliseconds(50));
        var reference = Fixtures.Load("mlp_tanh");

        var result = await client.StreamBatchJacobianAsync("mlp_tanh", TiledInputs(reference, 20), maxRowsPerChunk: 8);

        CloseTiled(reference.Jacobians["x"]["y"], result.Jacobians["y"], "mlp_tanh dy/dx");
    }

    [Fact]
    public async Task AStreamResetInTransitIsInternalWithoutRetries()
    {
        await using var proxy = new FlakyProxy(server.Port, resets: 1000, resetStreams: true);
        var client = ClientFor(proxy.Address, o => o.MaxAttempts = 1);

        var e = await Assert.ThrowsAsync<RpcException>(() => client.ListModelsAsync());

        // What Grpc.Net.Client makes of RST_STREAM INTERNAL_ERROR; the channel's retry policy does not retry it.
        Assert.Equal(StatusCode.Internal, e.StatusCode);
        var inner = e.Status.DebugException;
        while (inner is not null and not HttpProtocolException) inner = inner.InnerException;
        Assert.Equal(0x2, Assert.IsType<HttpProtocolException>(inner).ErrorCode);
    }

    [Fact]
    public async Task WithoutRetriesTheSameOutageIsUnavailable()
    {
        // The outage outlasts the call: SocketsHttpHandler may itself reconnect once for a request it never got to
        // send (whether it does depends on when the reset lands), so a one-reset outage could be hidden by it.
        await using var proxy = new FlakyProxy(server.Port, resets: 1000);
        var client = ClientFor(proxy.Address, o => o.MaxAttempts = 1);

        var e = await Assert.ThrowsAsync<RpcException>(() => client.ListModelsAsync());

        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.InRange(proxy.Connections, 1, 2);
    }
}
