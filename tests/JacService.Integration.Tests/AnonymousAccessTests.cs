using Grpc.Core;
using JacService.Protos.V1;
using JacService.Testing;

namespace JacService.Integration.Tests;

/// <summary>
/// Auth:AllowAnonymous: explicitly on beside an API key, anonymous callers pass and a caller with a key is still checked;
/// listening beyond loopback with anonymous access on is warned about at start; off with nothing to authenticate with,
/// the server refuses to start.
/// </summary>
public sealed class AnonymousAccessTests(AnonymousAccessTests.OpenServer fixture) : IClassFixture<AnonymousAccessTests.OpenServer>
{
    public sealed class OpenServer : IAsyncLifetime
    {
        public ApiKeys Keys { get; } = new();
        public ServerProcess Server { get; private set; } = null!;

        public Task InitializeAsync()
        {
            Keys.Add("reader", "jacservice.metadata");
            // Every interface, so the start-up warning has something to warn about; the tests still call 127.0.0.1.
            int port = FreePorts.Next();
            Server = new ServerProcess
            {
                Port = port,
                ExtraArgs = ["--Auth:AllowAnonymous=true", .. Keys.ServerArgs, "--Models:Warmup=false", "--urls", $"http://0.0.0.0:{port}"],
            };
            return Server.InitializeAsync();
        }

        public Task DisposeAsync() => Server.DisposeAsync();
    }

    [Fact]
    public async Task AnonymousCallersPassAndCredentialsAreStillChecked()
    {
        var client = fixture.Server.Client;
        var anonymous = await client.ListModelsAsync(new ListModelsRequest());
        Assert.NotEmpty(anonymous.Models);
        var keyed = await client.ListModelsAsync(new ListModelsRequest(), new Metadata { { "x-api-key", fixture.Keys["reader"] } });
        Assert.NotEmpty(keyed.Models);
        var wrong = await Assert.ThrowsAsync<RpcException>(() =>
            client.ListModelsAsync(new ListModelsRequest(), new Metadata { { "x-api-key", "not-a-key" } }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        Assert.Contains("the API key is not one the server accepts", wrong.Status.Detail);
    }

    [Fact]
    public async Task ListeningBeyondLoopbackWithAnonymousAccessIsWarned()
    {
        await fixture.Server.WaitForLog("Anonymous callers may call Inference, Metadata, Control RPCs and the server listens beyond loopback");
    }

    [Fact]
    public async Task NoAnonymousAccessAndNoSchemeDoesNotStart()
    {
        await using var server = new ServerProcess { ExtraArgs = ["--Auth:AllowAnonymous=false"] };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(server.InitializeAsync);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await server.WaitForExitAsync(timeout.Token);
        Assert.Contains("Auth:AllowAnonymous is false but no authentication scheme is configured", server.Log);
    }
}
