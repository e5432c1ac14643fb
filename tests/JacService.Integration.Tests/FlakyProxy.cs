using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace JacService.Integration.Tests;

/// <summary>
/// A TCP relay on a free loopback port in front of a real server that plays a server briefly down: it fails the
/// first <c>resets</c> connections, then relays every later one. Counting connections rather than waiting a time
/// keeps a retry test independent of the retry policy's random backoff. A connection fails by a TCP reset the moment
/// it opens, or, with <c>resetStreams</c>, at the HTTP/2 level: its first request's stream is reset with
/// INTERNAL_ERROR and the connection closed with GOAWAY, as an intermediary does whose upstream went away mid-call.
/// </summary>
public sealed class FlakyProxy : IAsyncDisposable
{
    private const int Http2InternalError = 0x2;
    private readonly bool _resetStreams;
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _relays = [];
    private readonly Task _accepting;
    private int _resetsLeft;
    private int _connections;

    public FlakyProxy(int upstreamPort, int resets, bool resetStreams = false)
    {
        _resetStreams = resetStreams;
        _upstream = new IPEndPoint(IPAddress.Loopback, upstreamPort);
        _resetsLeft = resets;
        _listener.Start();
        _accepting = AcceptLoop();
    }

    public string Address => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>Connections opened so far, reset or relayed.</summary>
    public int Connections => Volatile.Read(ref _connections);

    private async Task AcceptLoop()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptSocketAsync(_stop.Token);
                Interlocked.Increment(ref _connections);
                bool fail = Interlocked.Decrement(ref _resetsLeft) >= 0;
                if (fail && !_resetStreams)
                {
                    // Linger 0: close sends RST, as a port whose process has just died does.
                    client.LingerState = new LingerOption(true, 0);
                    client.Close();
                    continue;
                }
                lock (_relays) _relays.Add(fail ? ResetFirstStream(client) : Relay(client));
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
            // Stopping: a pending accept ends cancelled or aborted, and one begun after the listener stopped throws
            // InvalidOperationException ("Not listening"); which of them depends on where the loop was.
        }
    }

    private async Task Relay(Socket client)
    {
        using var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using (client)
        {
            try
            {
                await upstream.ConnectAsync(_upstream, _stop.Token);
                await using var a = new NetworkStream(client, ownsSocket: false);
                await using var b = new NetworkStream(upstream, ownsSocket: false);
                // Either side closing ends the relay; the other copy is cancelled with it.
                using var done = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                await Task.WhenAny(a.CopyToAsync(b, done.Token), b.CopyToAsync(a, done.Token));
                done.Cancel();
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
            }
        }
    }

    /// <summary>
    /// Just enough of an HTTP/2 server: its SETTINGS, an ACK for the client's, then RST_STREAM (INTERNAL_ERROR) for the
    /// first request and GOAWAY, so that the client's next attempt opens a new connection.
    /// </summary>
    private async Task ResetFirstStream(Socket client)
    {
        using (client)
        await using (var stream = new NetworkStream(client, ownsSocket: false))
        {
            try
            {
                await WriteFrame(stream, type: 0x4, flags: 0, streamId: 0, []);
                var preface = new byte[24];
                await stream.ReadExactlyAsync(preface, _stop.Token);
                var header = new byte[9];
                while (true)
                {
                    await stream.ReadExactlyAsync(header, _stop.Token);
                    int length = header[0] << 16 | header[1] << 8 | header[2];
                    byte type = header[3], flags = header[4];
                    int streamId = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(5)) & int.MaxValue;
                    await stream.ReadExactlyAsync(new byte[length], _stop.Token);
                    if (type == 0x4 && (flags & 0x1) == 0) await WriteFrame(stream, type: 0x4, flags: 0x1, streamId: 0, []);
                    if (type != 0x1) continue;
                    var error = new byte[4];
                    BinaryPrimitives.WriteInt32BigEndian(error, Http2InternalError);
                    await WriteFrame(stream, type: 0x3, flags: 0, streamId, error);
                    var goAway = new byte[8];
                    BinaryPrimitives.WriteInt32BigEndian(goAway, streamId);
                    await WriteFrame(stream, type: 0x7, flags: 0, streamId: 0, goAway);
                    client.Shutdown(SocketShutdown.Send);
                    // Read on until the client closes: closing with its request body unread would send a TCP reset,
                    // which could reach the client before the frames above.
                    while (await stream.ReadAsync(new byte[4096], _stop.Token) > 0) { }
                    return;
                }
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or EndOfStreamException)
            {
            }
        }
    }

    private async Task WriteFrame(NetworkStream stream, byte type, byte flags, int streamId, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame, 9);
        await stream.WriteAsync(frame, _stop.Token);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        Task[] relays;
        lock (_relays) relays = [.. _relays];
        await Task.WhenAll(relays);
        _stop.Dispose();
    }
}
