using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Auth;

/// <summary>
/// Authentication and authorisation (configuration section "Auth"; JWT bearer is the standard section
/// Authentication:Schemes:Bearer). Read and validated once at start.
/// </summary>
public sealed class AuthOptions : IValidatableObject
{
    public const string Section = "Auth";

    /// <summary>
    /// Whether callers without credentials may call inference, metadata and control RPCs (each group's
    /// <see cref="RpcGroupOptions.Anonymous"/> overrides it). Unset: allowed while no authentication scheme is configured,
    /// so a server that never configured authentication keeps serving as it did; refused as soon as one is, so
    /// configuring credentials never leaves a way around them. Explicitly true beside a scheme: anonymous callers pass and
    /// callers with credentials are still checked and named.
    /// </summary>
    public bool? AllowAnonymous { get; set; }

    /// <summary>Accepted API keys, sent as the metadata x-api-key.</summary>
    public List<ApiKeyOptions> ApiKeys { get; set; } = [];

    public CertificatePrincipalOptions Certificate { get; set; } = new();

    /// <summary>
    /// How long an accepted JWT is remembered, so the same token on the next calls is not validated again (never past
    /// its expiry; 0: every call validates). Also how long a token signed by a key since removed keeps being accepted.
    /// </summary>
    [Range(0, 3600)]
    public int TokenCacheSeconds { get; set; } = 60;

    /// <summary>Per group of RPCs: anonymous or not, and the scopes or roles a caller needs.</summary>
    public Dictionary<RpcGroup, RpcGroupOptions> Groups { get; set; } = [];

    /// <summary>The scopes a group needs when its Scopes and Roles are both unset.</summary>
    public static IReadOnlyList<string> DefaultScopes(RpcGroup group) => group switch
    {
        RpcGroup.Inference => ["jacservice.inference"],
        // A client that may compute derivatives needs the shapes of what it computes them of.
        RpcGroup.Metadata => ["jacservice.metadata", "jacservice.inference"],
        RpcGroup.Control => ["jacservice.control"],
        _ => [],
    };

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var hashes = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < ApiKeys.Count; i++)
        {
            var key = ApiKeys[i];
            string at = $"Auth:ApiKeys:{i}";
            if (string.IsNullOrWhiteSpace(key.Name) || key.Name.Any(char.IsControl))
                yield return new ValidationResult($"{at}:Name is required and must be printable (it names the principal in spans and logs)");
            else if (!names.Add(key.Name))
                yield return new ValidationResult($"{at}:Name '{key.Name}' is used by another key; give each key its own principal name");
            if (!ApiKeyStore.TryParseHash(key.Hash, out var hash))
                yield return new ValidationResult(
                    $"{at}:Hash must be the SHA-256 of the key, as 64 hex digits or 44 base64 characters (printf %s \"$key\" | sha256sum); never the key itself");
            else if (!hashes.Add(Convert.ToHexString(hash)))
                yield return new ValidationResult($"{at}:Hash is the hash of another entry's key");
            foreach (var problem in CheckNames($"{at}:Scopes", key.Scopes).Concat(CheckNames($"{at}:Roles", key.Roles)))
                yield return problem;
        }
        foreach (var problem in CheckNames("Auth:Certificate:Scopes", Certificate.Scopes).Concat(CheckNames("Auth:Certificate:Roles", Certificate.Roles)))
            yield return problem;
        if (Certificate.CaFile is not null)
            yield return new ValidationResult(
                "Auth:Certificate:CaFile is no longer a setting: client certificates are checked against Tls:ClientCaPath, in the TLS " +
                "handshake and again when they name the caller; remove Auth:Certificate:CaFile (and set Tls:ClientCaPath to that file)");
        foreach (var (group, rule) in Groups)
            foreach (var problem in CheckNames($"Auth:Groups:{group}:Scopes", rule.Scopes).Concat(CheckNames($"Auth:Groups:{group}:Roles", rule.Roles)))
                yield return problem;
    }

    private static IEnumerable<ValidationResult> CheckNames(string setting, string[]? names)
    {
        // Scopes travel space-separated in one claim, so a space would split one scope into two.
        if (names?.FirstOrDefault(n => string.IsNullOrWhiteSpace(n) || n.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))) is { } bad)
            yield return new ValidationResult($"{setting}: '{bad}' is not a scope or role name (empty, or with spaces)");
    }
}
