using JacService.Server.Auth;
using JacService.Server.Inference;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Quotas;

/// <summary>Whose quota a call counts against: its partition key, the quota's name and limits, and who it is in messages.</summary>
public sealed record QuotaCaller(string Key, string Quota, QuotaLimits Limits, string Who)
{
    public const string DefaultQuota = "default";
    public const string AnonymousQuota = "anonymous";

    public static QuotaCaller Of(HttpContext context, QuotaOptions options)
    {
        if (PrincipalClaims.NameOf(context.User) is { } name)
            return options.Principals.TryGetValue(name, out var own)
                ? new QuotaCaller("principal:" + name, name, own, $"'{name}'")
                : new QuotaCaller("principal:" + name, DefaultQuota, options.Default, $"'{name}'");
        string address = context.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        return new QuotaCaller("address:" + address, AnonymousQuota, options.Anonymous ?? options.Default, $"anonymous caller {address}");
    }

    /// <summary>The rate this caller may call at, as refusals say it.</summary>
    public string RateText => $"{Who} may make {Limits.RequestsPerSecond} calls per second (bursts of {Limits.EffectiveBurst})";

    /// <summary>
    /// Health probes and reflection are never limited: a probe refused for quota would restart a healthy pod. Nor is what is
    /// neither a gRPC call nor a route of the Open Inference Protocol's REST binding (a path no endpoint serves).
    /// </summary>
    public static bool IsExempt(HttpContext context) =>
        !(GrpcRefusal.IsGrpc(context) || OpenInferenceRoute.Of(context) is not null)
        || RpcGroups.Of(RpcGroups.MethodOf(context)) is RpcGroup.Health or RpcGroup.Reflection;
}
