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
    /// No longer a setting: the client CA is named once, by Tls:ClientCaPath, which both the TLS handshake and the
    /// certificate handler check against. Kept only so that a configuration still setting it stops the start with that
    /// message instead of being ignored.
    /// </summary>
    public string? CaFile { get; set; }

    /// <summary>Scopes every certificate principal gets.</summary>
    public string[] Scopes { get; set; } = [];

    /// <summary>Roles every certificate principal gets.</summary>
    public string[] Roles { get; set; } = [];
}
