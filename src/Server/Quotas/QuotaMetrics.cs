using System.Diagnostics;
using System.Diagnostics.Metrics;
using JacService.Server.Telemetry;

namespace JacService.Server.Quotas;

/// <summary>
/// Refusals by quota, on the JacService meter (jacservice_quota_refusals_total in Prometheus). ASP.NET Core's own
/// meter Microsoft.AspNetCore.RateLimiting counts every decision (aspnetcore_rate_limiting_requests_total by result);
/// this one says whose quota and which limit, with the quota's name rather than the caller's, so its labels stay few:
/// a principal listed under Quotas:Principals, "default" or "anonymous".
/// </summary>
public sealed class QuotaMetrics(IMeterFactory meters)
{
    private readonly Counter<long> _refusals = meters.Create(JacServiceTelemetry.Name)
        .CreateCounter<long>("jacservice.quota.refusals", "{call}", "Calls refused with RESOURCE_EXHAUSTED by a quota, by quota and limit (rate, concurrency)");

    public void Refused(string quota, string limit) => _refusals.Add(1, new TagList { { "quota", quota }, { "limit", limit } });
}
