using System.Security.Claims;

namespace JacService.Server.Auth;

/// <summary>
/// The claim names every scheme's principal is read by, as JWTs carry them (inbound claim mapping is off): "sub" names
/// the principal, "scope" (space-separated, or one claim per scope) and "scp" hold scopes, "role" and "roles" roles.
/// API-key and certificate principals are built with the same names.
/// </summary>
public static class PrincipalClaims
{
    public const string Name = "sub";
    public const string Scope = "scope";
    public const string Role = "role";

    /// <summary>An identity of <paramref name="scheme"/> with a name, scopes and roles.</summary>
    public static ClaimsPrincipal Create(string scheme, string name, IEnumerable<string> scopes, IEnumerable<string> roles)
    {
        var identity = new ClaimsIdentity(scheme, Name, Role);
        identity.AddClaim(new Claim(Name, name));
        foreach (var scope in scopes) identity.AddClaim(new Claim(Scope, scope));
        foreach (var role in roles) identity.AddClaim(new Claim(Role, role));
        return new ClaimsPrincipal(identity);
    }

    /// <summary>The principal's name: its name claim, else what OAuth clients are named by; null when anonymous.</summary>
    public static string? NameOf(ClaimsPrincipal user)
    {
        if (user.Identity?.IsAuthenticated != true) return null;
        return user.Identity.Name
            ?? user.FindFirst(Name)?.Value
            ?? user.FindFirst("client_id")?.Value
            ?? user.FindFirst("azp")?.Value
            ?? "(unnamed)";
    }

    public static bool HasAnyScope(ClaimsPrincipal user, IReadOnlyCollection<string> scopes) =>
        scopes.Count > 0 && user.Claims
            .Where(c => c.Type is Scope or "scp")
            .SelectMany(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Any(scopes.Contains);

    public static bool HasAnyRole(ClaimsPrincipal user, IReadOnlyCollection<string> roles) =>
        roles.Count > 0 && user.Claims.Any(c => c.Type is Role or "roles" or ClaimTypes.Role && roles.Contains(c.Value));
}
