using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Configuration;
using JacService.Protos.V1;

namespace JacService.Client;

/// <summary>Channels and clients configured for JacService's message sizes.</summary>
public static class JacServiceChannel
{
    /// <summary>
    /// A channel whose limits fit Jacobians (a batch of 256 28x28 images with 10 outputs is 8 MB, over gRPC's usual
    /// 4 MiB receive limit), with a wide HTTP/2 window so large responses need no flow-control round trips, and
    /// extra connections once one connection's concurrent-stream limit is reached.
    /// </summary>
    /// <param name="tls">For an https:// address: the CAs to trust and a client certificate; null trusts the system's store.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxMessageMiB"/> is not 1 to 2047.</exception>
    public static GrpcChannel Create(string address, int maxMessageMiB = 256, JacServiceClientTlsOptions? tls = null)
    {
        var channel = new GrpcChannelOptions { HttpHandler = CreateHandler(tls) };
        SetMessageLimits(channel, maxMessageMiB);
        return GrpcChannel.ForAddress(address, channel);
    }

    /// <summary>
    /// A channel with every setting of <paramref name="options"/>: message limits, and retries of UNAVAILABLE through
    /// gRPC's service config. Throws <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> for invalid options.
    /// </summary>
    public static GrpcChannel Create(JacServiceClientOptions options)
    {
        options.ThrowIfInvalid();
        var channel = new GrpcChannelOptions { HttpHandler = CreateHandler(options.Tls) };
        Configure(channel, options);
        return GrpcChannel.ForAddress(options.Address!, channel);
    }

    public static JacobianService.JacobianServiceClient CreateClient(string address, int maxMessageMiB = 256) =>
        new(Create(address, maxMessageMiB));

    private static void SetMessageLimits(GrpcChannelOptions channel, int maxMessageMiB)
    {
        // Past 2047 MiB the byte count overflows an int; 0 would refuse every message.
        ArgumentOutOfRangeException.ThrowIfLessThan(maxMessageMiB, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxMessageMiB, 2047);
        channel.MaxReceiveMessageSize = maxMessageMiB << 20;
        channel.MaxSendMessageSize = maxMessageMiB << 20;
    }

    internal static HttpMessageHandler CreateHandler(JacServiceClientTlsOptions? tls = null)
    {
        var handler = new SocketsHttpHandler
        {
            InitialHttp2StreamWindowSize = 16 << 20,
            EnableMultipleHttp2Connections = true,
        };
        if (tls is { IsSet: true }) tls.Apply(handler.SslOptions);
        return new UnsentRequestHandler(handler);
    }

    /// <summary>Applies the message limits and the retry policy of <paramref name="options"/> to a channel's options.</summary>
    internal static void Configure(GrpcChannelOptions channel, JacServiceClientOptions options)
    {
        SetMessageLimits(channel, options.MaxMessageMiB);
        channel.MaxRetryAttempts = options.MaxAttempts;
        channel.MaxRetryBufferPerCallSize = (long)options.MaxRetryBufferPerCallMiB << 20;
        // The channel-wide buffer is shared by the calls in flight; a few large requests may be retried at once.
        channel.MaxRetryBufferSize = Math.Max(16L << 20, 4L * channel.MaxRetryBufferPerCallSize.Value);
        // While the server is down the channel refuses calls until its next connection attempt; on gRPC's default
        // schedule (1 s, growing to 2 min) that attempt could come after every retry has been spent. A tenth of the
        // retries' backoff: a retry waits a random time from 0 up to its backoff, and with the reconnect as slow as the
        // retries, two retries drawn short both failed on the same refused connection (RetryTests, two resets spent
        // five attempts in 151 ms).
        channel.InitialReconnectBackoff = TimeSpan.FromTicks(Math.Max(options.InitialBackoff.Ticks / 10, TimeSpan.TicksPerMillisecond * 10));
        channel.MaxReconnectBackoff = options.MaxBackoff;
        if (options.MaxAttempts > 1)
        {
            channel.ServiceConfig = new ServiceConfig
            {
                MethodConfigs =
                {
                    new MethodConfig
                    {
                        Names = { MethodName.Default },
                        RetryPolicy = new RetryPolicy
                        {
                            MaxAttempts = options.MaxAttempts,
                            InitialBackoff = options.InitialBackoff,
                            MaxBackoff = options.MaxBackoff,
                            BackoffMultiplier = options.BackoffMultiplier,
                            // RESOURCE_EXHAUSTED: a full queue, the server's call memory budget or a quota, which pass;
                            // a call too large for any retry comes with a negative pushback, which stops the retries.
                            RetryableStatusCodes = { StatusCode.Unavailable, StatusCode.ResourceExhausted },
                        },
                    },
                },
            };
        }
    }
}
