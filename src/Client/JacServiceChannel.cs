using Grpc.Net.Client;
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
    public static GrpcChannel Create(string address, int maxMessageMiB = 256) => GrpcChannel.ForAddress(address, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = maxMessageMiB << 20,
        MaxSendMessageSize = maxMessageMiB << 20,
        HttpHandler = new SocketsHttpHandler
        {
            InitialHttp2StreamWindowSize = 16 << 20,
            EnableMultipleHttp2Connections = true,
        },
    });

    public static JacobianService.JacobianServiceClient CreateClient(string address, int maxMessageMiB = 256) =>
        new(Create(address, maxMessageMiB));
}
