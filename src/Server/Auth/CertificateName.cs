namespace JacService.Server.Auth;

/// <summary>Which part of a client certificate becomes the principal's name.</summary>
public enum CertificateName
{
    Subject,
    CommonName,
    Thumbprint,
}
