namespace JacService.Server.Auth;

/// <summary>
/// One API key (an entry of Auth:ApiKeys): the SHA-256 of the key, never the key, with the principal it stands for.
/// Make a key and its hash with: <c>key=$(openssl rand -hex 32); printf %s "$key" | sha256sum</c>.
/// </summary>
public sealed class ApiKeyOptions
{
    /// <summary>The principal's name: what spans, logs and quotas show for calls with this key.</summary>
    public string Name { get; set; } = "";

    /// <summary>SHA-256 of the key's UTF-8 bytes: 64 hexadecimal digits, or 44 characters of base64.</summary>
    public string Hash { get; set; } = "";

    /// <summary>Scopes the key grants (e.g. jacservice.inference).</summary>
    public string[] Scopes { get; set; } = [];

    /// <summary>Roles the key grants.</summary>
    public string[] Roles { get; set; } = [];
}
