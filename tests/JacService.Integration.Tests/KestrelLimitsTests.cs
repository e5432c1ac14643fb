using System.Buffers.Binary;
using System.Net.Sockets;
using JacService.Protos.V1;

namespace JacService.Integration.Tests;

/// <summary>
/// Kestrel's limits are settings (Kestrel:Limits), as its endpoints are: ASP.NET Core binds only the section's
/// endpoints and certificates, and before the server bound the limits itself, a server started with
/// Kestrel:Limits:MaxConcurrentConnections=3 kept six connections of six open. Each idle stream costs the server about
/// 15 KB and each connection may carry 100 (docs/security.md), so these are what bounds a client that opens many.
/// </summary>
public class KestrelLimitsTests
{
    private static readonly byte[] Preface = [.. "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8, 0, 0, 0, 4, 0, 0, 0, 0, 0];

    [Fact]
    public async Task ConnectionsOverTheLimitAreClosedAndStreamsPerConnectionAreAnnounced()
    {
        await using var server = new ServerProcess
        {
            ExtraArgs = ["--Models:Warmup=false", "--Kestrel:Limits:MaxConcurrentConnections=3", "--Kestrel:Limits:Http2:MaxStreamsPerConnection=5"],
        };
        await server.InitializeAsync();

        var sockets = new List<Socket>();
        try
        {
            for (int i = 0; i < 6; i++)
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync("127.0.0.1", server.Port);
                await socket.SendAsync(Preface);
                sockets.Add(socket);
            }
            var frames = await Task.WhenAll(sockets.Select(FirstFrameOrClosed));
            // The test's own channel to the server may hold one of the three; three of the six are over the limit either way.
            int open = frames.Count(f => f is not null);
            Assert.InRange(open, 1, 3);
            // The server's SETTINGS: SETTINGS_MAX_CONCURRENT_STREAMS (0x3) is the configured 5.
            var settings = frames.First(f => f is not null)!;
            Assert.Equal(4, settings[3]);
            Assert.Equal(5u, Setting(settings, 0x3));
        }
        finally
        {
            foreach (var socket in sockets) socket.Dispose();
        }

        // The connections let go, a new client is served.
        await Waiting.Until(async () =>
        {
            using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://{server.Target}");
            try
            {
                return (await new JacobianService.JacobianServiceClient(channel).ListModelsAsync(new ListModelsRequest())).Models.Count > 0;
            }
            catch (Grpc.Core.RpcException)
            {
                return false;
            }
        }, "a new connection was not served after the others closed", server);
    }

    /// <summary>The server's first frame (header and payload), or null where it closed the connection without one.</summary>
    private static async Task<byte[]?> FirstFrameOrClosed(Socket socket)
    {
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        while (received.Count < 9 || received.Count < 9 + (received[0] << 16 | received[1] << 8 | received[2]))
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                return null;
            }
            if (n == 0) return null;
            received.AddRange(buffer.AsSpan(0, n));
        }
        return [.. received];
    }

    private static uint? Setting(byte[] frame, ushort id)
    {
        int length = frame[0] << 16 | frame[1] << 8 | frame[2];
        for (int at = 9; at + 6 <= 9 + length; at += 6)
            if (BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(at)) == id) return BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(at + 2));
        return null;
    }
}
