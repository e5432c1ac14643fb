using Grpc.Core;
using Grpc.Core.Interceptors;
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
    /// <summary>The channel with the caller's credentials added to every call.</summary>
    public CallInvoker Invoker { get; }
    public JacobianService.JacobianServiceClient Client { get; }
    public JacServiceClient Library { get; }
    public Health.HealthClient Health { get; }

    /// <param name="target">See <see cref="Normalize"/>.</param>
    /// <param name="credentials">Metadata added to every call (authorization, x-api-key), or null.</param>
    public Connection(string target, Metadata? credentials = null)
    {
        Address = Normalize(target);
        Channel = JacServiceChannel.Create(Address);
        Invoker = credentials is null ? Channel.CreateCallInvoker() : Channel.Intercept(headers =>
        {
            foreach (var entry in credentials) headers.Add(entry);
            return headers;
        });
        Client = new JacobianService.JacobianServiceClient(Invoker);
        Library = new JacServiceClient(Client, new JacServiceClientOptions { Address = new Uri(Address) });
        Health = new Health.HealthClient(Invoker);
    }

    /// <summary>"host:port" or a full URL; plaintext HTTP/2 unless https:// is given.</summary>
    public static string Normalize(string target) =>
        target.Contains("://", StringComparison.Ordinal) ? target.TrimEnd('/') : "http://" + target;

    public void Dispose() => Channel.Dispose();
}
