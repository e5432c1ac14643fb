namespace JacService.Server.Auth;

/// <summary>
/// The client certificate as a principal (Auth:Certificate), for servers that require client certificates (mTLS). Off
/// by default: without mTLS no certificate arrives, and a certificate Kestrel did not ask for proves nothing.
/// </summary>
public sealed class CertificatePrincipalOptions
{
    public bool Enabled { get; set; }

    /// <summary>What names the principal: Subject (the distinguished name), CommonName, or Thumbprint (SHA-256, hex).</summary>
    public CertificateName NameFrom { get; set; } = CertificateName.Subject;

    /// <summary>
    /// PEM file of the CA certificate(s) client certificates must chain to: the CA the TLS settings trust. The
    /// certificate handler checks the chain again after Kestrel did; unset, it checks against the system's roots.
    /// </summary>
    public string? CaFile { get; set; }

    /// <summary>Scopes every certificate principal gets.</summary>
    public string[] Scopes { get; set; } = [];

    /// <summary>Roles every certificate principal gets.</summary>
    public string[] Roles { get; set; } = [];
}
