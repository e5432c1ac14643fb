using System.Net;
using System.Net.Sockets;

namespace JacService.Testing;

/// <summary>
/// Ports for the test servers to listen on. A port is free when a probe can bind it, and stays free only until the
/// server binds it: a port from the kernel's ephemeral range (what binding port 0 gives) can meanwhile be taken by any
/// outbound connection, and the suite makes thousands (once in CI a TLS server's port was, and its 24 tests failed).
/// So ports are drawn below that range, where only another listener can take one.
/// </summary>
public static class FreePorts
{
    private const int Span = 10_000;
    private static readonly int EphemeralLow = ReadEphemeralLow();

    public static int Next()
    {
        int low = Math.Max(1024, EphemeralLow - Span);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(low, EphemeralLow);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // Taken: draw again.
            }
        }
        throw new InvalidOperationException($"no free port between {low} and {EphemeralLow} in 100 draws");
    }

    /// <summary>The first port of net.ipv4.ip_local_port_range (32768 where it cannot be read).</summary>
    private static int ReadEphemeralLow()
    {
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return int.Parse(range[0]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 32768;
        }
    }
}
