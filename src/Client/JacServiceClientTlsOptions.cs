using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace JacService.Client;

/// <summary>
/// TLS settings of a channel to an https:// address (configuration section "JacServiceClient:Tls"): the CAs to trust
/// for the server's certificate, and the certificate to present to a server that asks for one (mutual TLS). With none
/// of them an https:// address is checked against the system's trust store, as HttpClient does. The files are read
/// when a channel (or, through AddJacServiceClient, a connection handler) is made.
/// </summary>
public sealed class JacServiceClientTlsOptions
{
    /// <summary>
    /// PEM file of the CA certificates the server's certificate must chain to, in place of the system's trust store
    /// (for a private CA). The server's name is still checked against the certificate.
    /// </summary>
    public string? CaPath { get; set; }

    /// <summary>PEM file of the client certificate, optionally followed by its intermediate CA certificates.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>PEM file of the client certificate's private key (unencrypted PKCS#8, PKCS#1 or SEC1).</summary>
    public string? KeyPath { get; set; }

    internal bool IsSet => Given(CaPath) || Given(CertificatePath) || Given(KeyPath);

    /// <summary>Every problem, each naming the setting under <paramref name="section"/>.</summary>
    internal IEnumerable<string> Validate(string section, Uri? address)
    {
        if (!IsSet) yield break;
        if (address is { IsAbsoluteUri: true, Scheme: "http" })
            yield return $"{section}:{nameof(CaPath)}, {nameof(CertificatePath)} and {nameof(KeyPath)} need an https:// address, got '{address}'";
        if (Given(CertificatePath) != Given(KeyPath))
            yield return $"{section}:{nameof(CertificatePath)} and {nameof(KeyPath)} go together: give both or neither";
        foreach (var (name, path) in new[] { (nameof(CaPath), CaPath), (nameof(CertificatePath), CertificatePath), (nameof(KeyPath), KeyPath) })
            if (Given(path) && !File.Exists(path))
                yield return $"{section}:{name} '{path}' does not exist";
    }

    /// <summary>Reads the files into the handler's TLS options; a file that does not hold what it should throws, naming it.</summary>
    internal void Apply(SslClientAuthenticationOptions ssl)
    {
        if (Given(CaPath))
        {
            var cas = Read(nameof(CaPath), CaPath!, path =>
            {
                var bundle = new X509Certificate2Collection();
                bundle.ImportFromPemFile(path);
                return bundle.Count > 0 ? bundle : throw new CryptographicException("no PEM certificate (-----BEGIN CERTIFICATE-----) in it");
            });
            // Trusts these CAs only; SslStream still checks the name, the dates and the chain with them as roots.
            ssl.CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                // A private CA rarely publishes revocation lists a client could reach.
                RevocationMode = X509RevocationMode.NoCheck,
            };
            ssl.CertificateChainPolicy.CustomTrustStore.AddRange(cas);
        }
        if (Given(CertificatePath))
        {
            var (leaf, intermediates) = Read(nameof(CertificatePath), CertificatePath!, path =>
            {
                using var pem = X509Certificate2.CreateFromPemFile(path, KeyPath);
                // Windows' TLS stack cannot use a key held only in memory, as a PEM key is; a PKCS#12 round trip
                // gives it one it can (and changes nothing elsewhere).
                var leaf = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
                var chain = new X509Certificate2Collection();
                chain.ImportFromPemFile(path);
                return (leaf, new X509Certificate2Collection(chain.Skip(1).ToArray()));
            });
            // Sent with its intermediates, so the server needs only the root in its client CA bundle.
            ssl.ClientCertificateContext = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
        }
    }

    private T Read<T>(string setting, string path, Func<string, T> read)
    {
        try
        {
            return read(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            string key = setting == nameof(CertificatePath) ? $" (with {nameof(KeyPath)} '{KeyPath}')" : "";
            throw new InvalidOperationException($"JacServiceClient:Tls:{setting} '{path}'{key} cannot be read: {e.Message}", e);
        }
    }

    private static bool Given(string? path) => !string.IsNullOrWhiteSpace(path);
}
