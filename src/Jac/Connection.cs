using Grpc.Health.V1;
using Grpc.Net.Client;
using JacService.Client;
using JacService.Protos.V1;

namespace JacService.Jac;

/// <summary>
/// One channel to the server (JacServiceChannel's limits) and the clients on it: the client library for the calls
/// with tensors, the generated stub for what the library does not wrap (ModelInfo with its batching statistics).
/// </summary>
public sealed class Connection : IDisposable
{
    public string Address { get; }
    public GrpcChannel Channel { get; }
    public JacobianService.JacobianServiceClient Client { get; }
    public JacServiceClient Library { get; }
    public Health.HealthClient Health { get; }

    public Connection(string target)
    {
        Address = Normalize(target);
        Channel = JacServiceChannel.Create(Address);
        Client = new JacobianService.JacobianServiceClient(Channel);
        Library = new JacServiceClient(Client, new JacServiceClientOptions { Address = new Uri(Address) });
        Health = new Health.HealthClient(Channel);
    }

    /// <summary>"host:port" or a full URL; plaintext HTTP/2 unless https:// is given.</summary>
    public static string Normalize(string target) =>
        target.Contains("://", StringComparison.Ordinal) ? target.TrimEnd('/') : "http://" + target;

    public void Dispose() => Channel.Dispose();
}
