using Grpc.Core;

namespace JacService.Server.Tests;

/// <summary>A call made in-process, with no HTTP request behind it: a method name, a deadline and a cancellation token.</summary>
internal sealed class FakeCallContext(CancellationToken cancellation = default, DateTime? deadline = null) : ServerCallContext
{
    protected override string MethodCore => "/jacservice.v1.JacobianService/Predict";
    protected override string HostCore => "127.0.0.1";
    protected override string PeerCore => "ipv4:127.0.0.1:1";
    protected override DateTime DeadlineCore => deadline ?? DateTime.MaxValue;
    protected override Metadata RequestHeadersCore { get; } = [];
    protected override CancellationToken CancellationTokenCore => cancellation;
    protected override Metadata ResponseTrailersCore { get; } = [];
    protected override Status StatusCore { get; set; }
    protected override WriteOptions? WriteOptionsCore { get; set; }
    protected override AuthContext AuthContextCore => new(null, []);

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException();

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}
