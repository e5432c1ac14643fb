using Microsoft.AspNetCore.Authorization;

namespace JacService.Server.Auth;

/// <summary>The one requirement of every RPC: its group's rule (see <see cref="RpcGroupAuthorizationHandler"/>).</summary>
public sealed class RpcGroupRequirement : IAuthorizationRequirement;
