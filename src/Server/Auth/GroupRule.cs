namespace JacService.Server.Auth;

/// <summary>What one group of RPCs asks of its callers, with the defaults applied.</summary>
/// <param name="Anonymous">Callers without credentials pass (credentials that are sent must still be good).</param>
/// <param name="Scopes">Any one of these scopes lets an authenticated caller in.</param>
/// <param name="Roles">Any one of these roles lets an authenticated caller in; with no scopes and no roles, anyone authenticated passes.</param>
public sealed record GroupRule(bool Anonymous, IReadOnlyList<string> Scopes, IReadOnlyList<string> Roles)
{
    public string Describe() => (Scopes.Count, Roles.Count) switch
    {
        (0, 0) => "any authenticated caller",
        (_, 0) => $"scope {string.Join(" or ", Scopes)}",
        (0, _) => $"role {string.Join(" or ", Roles)}",
        _ => $"scope {string.Join(" or ", Scopes)}, or role {string.Join(" or ", Roles)}",
    };
}
