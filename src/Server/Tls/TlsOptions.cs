using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace JacService.Server.Tls;

/// <summary>
/// Mutual TLS (configuration section "Tls"). TLS itself is Kestrel's standard endpoint configuration
/// (Kestrel:Endpoints:NAME:Url=https://..., :Certificate:Path, :KeyPath, :ClientCertificateMode); this is only what
/// Kestrel has no setting for: the certificate authorities a client certificate must chain to. The bundle is read once,
/// at start; a changed file takes effect at the next start.
/// </summary>
public sealed class TlsOptions : IValidatableObject
{
    public const string Section = "Tls";

    /// <summary>
    /// PEM file of the CA certificates that issue client certificates. Client certificates are checked against these
    /// only, never against the system's trust store (which trusts every public CA, each able to issue a certificate
    /// with any name). Required when an endpoint sets ClientCertificateMode, refused when none does.
    /// </summary>
    public string? ClientCaPath { get; set; }

    private X509Certificate2Collection? _clientCas;

    /// <summary>The certificates of <see cref="ClientCaPath"/>, as read during validation.</summary>
    internal X509Certificate2Collection ClientCas => _clientCas ?? throw new InvalidOperationException("Tls options were not validated");

    public bool ChecksClientCertificates => !string.IsNullOrWhiteSpace(ClientCaPath);

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!ChecksClientCertificates) yield break;
        var problem = Read(out _clientCas);
        if (problem is not null) yield return new ValidationResult($"Tls:ClientCaPath '{ClientCaPath}' {problem}", [nameof(ClientCaPath)]);
    }

    private string? Read(out X509Certificate2Collection? cas)
    {
        cas = null;
        var bundle = new X509Certificate2Collection();
        try
        {
            bundle.ImportFromPemFile(ClientCaPath!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return $"cannot be read as PEM certificates: {e.Message}";
        }
        if (bundle.Count == 0) return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
        // A client's own certificate put here by mistake issues nothing: every handshake would fail, with the cause
        // only in a log line per rejection. Refused at start instead.
        if (bundle.FirstOrDefault(c => c.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true }) is { } leaf)
            return $"holds '{leaf.Subject}', which is not a CA certificate (no basicConstraints CA:TRUE); give the CA that issues the client certificates";
        cas = bundle;
        return null;
    }
}
