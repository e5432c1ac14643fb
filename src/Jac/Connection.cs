using System.CommandLine;
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
    /// <param name="tls">The CAs to trust and the client certificate, or null for the system's store.</param>
    public Connection(string target, Metadata? credentials = null, JacServiceClientTlsOptions? tls = null)
    {
        bool secure = tls is not null && new[] { tls.CaPath, tls.CertificatePath, tls.KeyPath }.Any(p => !string.IsNullOrWhiteSpace(p));
        Address = Normalize(target, secure);
        var options = new JacServiceClientOptions { Address = new Uri(Address), Tls = tls ?? new() };
        // The library's own checks, reported in the words of jac's options.
        if (options.Validate().FirstOrDefault() is { } problem) throw new JacException(InJacWords(problem));
        try
        {
            Channel = JacServiceChannel.Create(Address, tls: options.Tls);
        }
        catch (InvalidOperationException e)
        {
            throw new JacException(InJacWords(e.Message));
        }
        Invoker = credentials is null ? Channel.CreateCallInvoker() : Channel.Intercept(headers =>
        {
            foreach (var entry in credentials) headers.Add(entry);
            return headers;
        });
        Client = new JacobianService.JacobianServiceClient(Invoker);
        Library = new JacServiceClient(Client, options);
        Health = new Health.HealthClient(Invoker);
    }

    /// <summary>The connection jac's global options ask for: --target, and --ca, --cert and --key for TLS; <paramref name="credentials"/> on every call.</summary>
    public static Connection Open(ParseResult r, Metadata? credentials = null) =>
        new(r.GetValue(JacApp.Target)!, credentials, new JacServiceClientTlsOptions
        {
            CaPath = r.GetValue(JacApp.Ca),
            CertificatePath = r.GetValue(JacApp.Cert),
            KeyPath = r.GetValue(JacApp.Key),
        });

    private static readonly (string Setting, string Option)[] OptionNames =
    [
        ("JacServiceClient:Tls:CaPath", "--ca"), ("JacServiceClient:Tls:CertificatePath", "--cert"),
        ("JacServiceClient:Tls:KeyPath", "--key"), ("JacServiceClient:Address", "--target"),
        ("CaPath", "--ca"), ("CertificatePath", "--cert"), ("KeyPath", "--key"),
    ];

    private static string InJacWords(string message) =>
        OptionNames.Aggregate(message, (text, name) => text.Replace(name.Setting, name.Option, StringComparison.Ordinal));

    /// <summary>"host:port" or a full URL; plaintext HTTP/2 unless https:// is given or <paramref name="secure"/> (TLS files given).</summary>
    public static string Normalize(string target, bool secure = false) =>
        target.Contains("://", StringComparison.Ordinal) ? target.TrimEnd('/') : (secure ? "https://" : "http://") + target;

    public void Dispose() => Channel.Dispose();
}
