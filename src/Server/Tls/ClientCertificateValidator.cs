using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using JacService.Server.Grpc;
using Microsoft.Extensions.Options;

namespace JacService.Server.Tls;

/// <summary>
/// Kestrel's client-certificate check (HttpsConnectionAdapterOptions.ClientCertificateValidation) during the TLS
/// handshake: the certificate must chain to a CA of Tls:ClientCaPath and allow client authentication. A certificate that
/// passes is what ASP.NET Core hands on as HttpContext.Connection.ClientCertificate, for authentication to build a
/// principal from; one that fails ends the handshake, so no request of that connection reaches the server.
/// </summary>
public sealed partial class ClientCertificateValidator(IOptions<TlsOptions> options, CallerErrorLog callerErrors, ILogger<ClientCertificateValidator> logger)
{
    /// <summary>The caller-error kind of a refused certificate (rate-limited like the other caller errors).</summary>
    public const string Rejected = "ClientCertificateRejected";

    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");
    private readonly X509Certificate2Collection _cas = options.Value.ClientCas;

    /// <param name="certificate">What the client presented.</param>
    /// <param name="chain">The chain SslStream built against the system's store; only the intermediates the client sent are taken from it.</param>
    /// <param name="errors">SslStream's verdict against the system's store, which is not the trust asked for: ignored.</param>
    public bool Validate(X509Certificate2 certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        using var ours = new X509Chain();
        var policy = ours.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(_cas);
        // No revocation lists or OCSP: the server may have no way out to the CA's URLs, and a lookup per handshake would
        // stall every new connection on a network call. Short-lived client certificates are the remedy (docs/security.md).
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.ApplicationPolicy.Add(ClientAuthentication);
        if (chain is not null)
        {
            policy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
            foreach (var element in chain.ChainElements.Skip(1)) policy.ExtraStore.Add(element.Certificate);
        }
        if (ours.Build(certificate))
        {
            LogAccepted(certificate.Subject, certificate.Issuer, certificate.Thumbprint);
            return true;
        }
        var reasons = string.Join("; ", ours.ChainStatus.Select(s => $"{s.Status}: {s.StatusInformation.Trim()}").Distinct());
        callerErrors.Report(Rejected, "TLS handshake", $"client certificate '{certificate.Subject}' issued by '{certificate.Issuer}' refused ({reasons})");
        return false;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client certificate '{Subject}' issued by '{Issuer}' (SHA-1 {Thumbprint}) accepted")]
    private partial void LogAccepted(string subject, string issuer, string thumbprint);
}
