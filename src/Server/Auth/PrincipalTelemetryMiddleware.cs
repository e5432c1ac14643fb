using System.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Auth;

/// <summary>
/// Puts the authenticated caller's name (never a credential) on the request's server span as enduser.id and into the
/// log scope of everything logged during the call. Runs after authorisation, so refused callers are not named here.
/// </summary>
public sealed class PrincipalTelemetryMiddleware(RequestDelegate next, ILogger<PrincipalTelemetryMiddleware> logger)
{
    /// <summary>The OpenTelemetry attribute of the caller's identity.</summary>
    public const string Attribute = "enduser.id";

    public Task InvokeAsync(HttpContext context)
    {
        var name = PrincipalClaims.NameOf(context.User);
        if (name is null) return next(context);
        Activity.Current?.SetTag(Attribute, name);
        return InScope(context, name);
    }

    private async Task InScope(HttpContext context, string name)
    {
        using (logger.BeginScope("enduser.id={enduser.id}", name))
            await next(context);
    }
}
