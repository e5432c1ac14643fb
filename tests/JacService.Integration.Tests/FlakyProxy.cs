using System.Net;
using System.Net.Sockets;

namespace JacService.Integration.Tests;

/// <summary>
/// A TCP relay on a free loopback port in front of a real server that plays a server briefly down: it resets the
/// first <c>resets</c> connections the moment they open, then relays every later one. Counting connections
/// rather than waiting a time keeps a retry test independent of the retry policy's random backoff.
/// </summary>
public sealed class FlakyProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _relays = [];
    private readonly Task _accepting;
    private int _resetsLeft;
    private int _connections;

    public FlakyProxy(int upstreamPort, int resets)
    {
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
                if (Interlocked.Decrement(ref _resetsLeft) >= 0)
                {
                    // Linger 0: close sends RST, as a port whose process has just died does.
                    client.LingerState = new LingerOption(true, 0);
                    client.Close();
                    continue;
                }
                lock (_relays) _relays.Add(Relay(client));
            }
        }
        catch (OperationCanceledException)
        {
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
