namespace JacService.Server.Auth;

/// <summary>
/// Who may call one group of RPCs (Auth:Groups:Inference, :Metadata, :Control, :Health, :Reflection). A caller passes
/// with any one of <see cref="Scopes"/> or any one of <see cref="Roles"/>; with both lists empty any authenticated
/// caller passes. Unset lists take the group's defaults (see <see cref="AuthOptions"/>): configured lists replace them.
/// </summary>
public sealed class RpcGroupOptions
{
    /// <summary>
    /// Whether callers without credentials pass. Unset: true for Health and Reflection (probes and tools carry no
    /// credentials), Auth:AllowAnonymous for the others.
    /// </summary>
    public bool? Anonymous { get; set; }

    /// <summary>OAuth scopes, any one of which lets a caller in (claim "scope", space-separated, or "scp").</summary>
    public string[]? Scopes { get; set; }

    /// <summary>Roles, any one of which lets a caller in (claim "role" or "roles").</summary>
    public string[]? Roles { get; set; }
}
