using Grpc.Core;
using JacService.Server.Grpc;
using JacService.Server.Inference;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;

namespace JacService.Server.Auth;

/// <summary>
/// ASP.NET Core's answer to a refused call (the schemes' challenge or forbid: HTTP 401 or 403, with WWW-Authenticate),
/// plus the gRPC status in the headers: UNAUTHENTICATED when credentials are missing or not accepted, PERMISSION_DENIED
/// when the caller lacks the group's scope or role, each with a message saying what the call needs. The HTTP status
/// stays 401 or 403: clients that read grpc-status (grpc-dotnet, the C core) take the status and message from it, and
/// those that look only at the HTTP status map 401 and 403 to the same two codes. A call of the Open Inference Protocol's
/// REST binding gets the same message in its error body.
/// </summary>
public sealed class GrpcAuthorizationResultHandler(AuthPlan plan, RpcGroupAuthorizationHandler rules, CallerErrorLog callerErrors)
    : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult result)
    {
        await _default.HandleAsync(next, context, policy, result);
        bool rest = OpenInferenceRoute.Of(context) is not null;
        if (result.Succeeded || !(rest || GrpcRefusal.IsGrpc(context)) || context.Response.HasStarted) return;
        string method = RpcGroups.MethodOf(context);
        if (result.Challenged)
        {
            // Certificate authentication answers a challenge with 403; a missing credential is 401 whatever the scheme.
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            string message = await WhyUnauthenticated(context);
            callerErrors.Report(nameof(StatusCode.Unauthenticated), method, message);
            await Refuse(context, rest, StatusCode.Unauthenticated, message);
        }
        else if (result.Forbidden)
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            var group = RpcGroups.Of(method);
            string message = $"'{PrincipalClaims.NameOf(context.User)}' may not call {(group is null ? "this method" : group + " RPCs")}: they need {rules.RuleFor(context).Describe()}";
            callerErrors.Report(nameof(StatusCode.PermissionDenied), method, message);
            await Refuse(context, rest, StatusCode.PermissionDenied, message);
        }
    }

    /// <summary>The reason in the call's own protocol: gRPC's status headers, or the REST binding's error body.</summary>
    private static Task Refuse(HttpContext context, bool rest, StatusCode status, string message)
    {
        if (rest) return RestError.WriteAsync(context.Response, status, message);
        GrpcRefusal.Write(context.Response, status, message);
        return Task.CompletedTask;
    }

    private async Task<string> WhyUnauthenticated(HttpContext context)
    {
        if (!plan.CarriesCredential(context) && context.Connection.ClientCertificate is null)
            return $"this call needs credentials: {plan.HowToAuthenticate()}";
        // The scheme's result is cached for the request: this does not authenticate again.
        var failure = (await context.AuthenticateAsync(AuthPlan.SchemeName)).Failure;
        return "the credentials were not accepted: " + Describe(failure);
    }

    /// <summary>A reason the caller can act on. Token validation messages are not passed on: they quote the token's contents.</summary>
    private static string Describe(Exception? failure) => failure switch
    {
        SecurityTokenExpiredException => "the bearer token has expired",
        SecurityTokenNotYetValidException => "the bearer token is not valid yet",
        SecurityTokenInvalidAudienceException => "the bearer token is for another audience",
        SecurityTokenInvalidIssuerException => "the bearer token's issuer is not trusted",
        SecurityTokenSignatureKeyNotFoundException or SecurityTokenInvalidSignatureException => "the bearer token is not signed by a trusted key",
        SecurityTokenMalformedException => "the bearer token is not a well-formed JWT",
        SecurityTokenException => "the bearer token is not valid",
        AggregateException many => string.Join("; ", many.InnerExceptions.Select(Describe).Distinct()),
        // Our own schemes' reasons (AuthenticateResult.Fail with a sentence) name no secret.
        AuthenticationFailureException own => own.Message,
        null => "they were not recognised",
        _ => "they are not valid",
    };
}
