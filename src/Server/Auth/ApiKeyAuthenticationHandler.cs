using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace JacService.Server.Auth;

/// <summary>
/// The API-key scheme: the metadata <c>x-api-key: KEY</c> against <see cref="ApiKeyStore"/>. A header of its own rather
/// than <c>authorization</c>, so a key can travel beside a bearer token (ModelControl's token, or a proxy's).
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeyStore keys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string Header = "x-api-key";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var offered = Request.Headers[Header];
        if (offered.Count == 0) return Task.FromResult(AuthenticateResult.NoResult());
        if (offered.Count > 1 || string.IsNullOrWhiteSpace(offered[0]))
            return Task.FromResult(AuthenticateResult.Fail("send exactly one non-empty x-api-key"));
        if (keys.Find(offered[0]!.Trim()) is not { } key)
            return Task.FromResult(AuthenticateResult.Fail("the API key is not one the server accepts"));
        var principal = PrincipalClaims.Create(SchemeName, key.Name, key.Scopes, key.Roles);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName)));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = SchemeName;
        return Task.CompletedTask;
    }
}
