using System.Threading.RateLimiting;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace JacService.Server.Quotas;

/// <summary>
/// The caller's rate quota applied to each message of a JacobianStream after its first (the call itself took a token
/// through the rate-limiting middleware, which sees one HTTP request per stream), so a stream is no way around the
/// rate. One stream's concurrency is bounded by Limits:MaxStreamRequestsInFlight, and the stream holds one of the
/// caller's concurrent-call permits for as long as it is open.
/// </summary>
public sealed class StreamMessageQuota
{
    private readonly PartitionedRateLimiter<HttpContext>? _rate;
    private readonly QuotaOptions? _options;
    private readonly QuotaMetrics? _metrics;

    /// <summary>Quotas off: every message passes.</summary>
    public static readonly StreamMessageQuota None = new(null, null, null);

    public StreamMessageQuota(PartitionedRateLimiter<HttpContext>? rate, QuotaOptions? options, QuotaMetrics? metrics)
    {
        _rate = rate;
        _options = options;
        _metrics = metrics;
    }

    /// <summary>Null when the message may run; otherwise why not, as the RESOURCE_EXHAUSTED message to answer it with.</summary>
    public string? Refusal(ServerCallContext call)
    {
        if (_rate is null) return null;
        var context = call.GetHttpContext();
        using var lease = _rate.AttemptAcquire(context);
        if (lease.IsAcquired) return null;
        var caller = QuotaCaller.Of(context, _options!);
        _metrics!.Refused(caller.Quota, "rate");
        long milliseconds = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter)
            ? Math.Max(1, (long)Math.Ceiling(retryAfter.TotalMilliseconds)) : 1000;
        return $"quota exceeded: {caller.RateText}, each message of a stream counting as one; retry in {milliseconds} ms";
    }
}
