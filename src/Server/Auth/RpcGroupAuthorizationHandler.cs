using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Auth;

/// <summary>
/// Judges a call by its group's rule, found from the gRPC method it calls (<see cref="RpcGroups.MethodOf"/>). A caller without
/// credentials passes an anonymous group; one that sent credentials that failed does not (a mistyped key should be
/// told, not served as anonymous). An authenticated caller needs one of the group's scopes or roles.
/// </summary>
public sealed class RpcGroupAuthorizationHandler(AuthPlan plan) : AuthorizationHandler<RpcGroupRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, RpcGroupRequirement requirement)
    {
        if (context.Resource is not HttpContext http) return Task.CompletedTask;
        var rule = RuleFor(http);
        var user = context.User;
        bool passes = user.Identity?.IsAuthenticated == true
            ? rule.Anonymous || (rule.Scopes.Count == 0 && rule.Roles.Count == 0)
              || PrincipalClaims.HasAnyScope(user, rule.Scopes) || PrincipalClaims.HasAnyRole(user, rule.Roles)
            : rule.Anonymous && !plan.CarriesCredential(http);
        if (passes) context.Succeed(requirement);
        return Task.CompletedTask;
    }

    public GroupRule RuleFor(HttpContext http) => RpcGroups.Of(RpcGroups.MethodOf(http)) is { } group ? plan.RuleFor(group) : AuthPlan.UnknownMethod;
}
