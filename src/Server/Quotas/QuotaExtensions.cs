using System.Globalization;
using System.Threading.RateLimiting;
using Grpc.Core;
using JacService.Server.Auth;
using JacService.Server.Extensions;
using JacService.Server.Grpc;
using JacService.Server.Inference;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace JacService.Server.Quotas;

/// <summary>
/// Quotas with ASP.NET Core rate limiting: a global limiter, partitioned by caller, chaining a token bucket (rate) and a
/// concurrency limiter, neither queueing. A refusal is RESOURCE_EXHAUSTED with a retry hint instead of HTTP 429, which
/// gRPC clients would read as UNAVAILABLE and retry at once; a call of the Open Inference Protocol's REST binding gets 429.
/// </summary>
public static class QuotaExtensions
{
    public static WebApplicationBuilder AddJacServiceQuotas(this WebApplicationBuilder builder)
    {
        // Whether quotas exist decides what is registered: read and validated now, once.
        var options = builder.AddOptionsNeededToRegister<QuotaOptions>(QuotaOptions.Section);
        if (!options.Enabled)
        {
            builder.Services.AddSingleton(StreamMessageQuota.None);
            return builder;
        }
        builder.Services.AddSingleton<QuotaMetrics>();
        // One rate limiter, shared by the middleware (one token per call) and JacobianStream (one per further message).
        var rate = PartitionedRateLimiter.Create<HttpContext, string>(context => RatePartition(context, options));
        builder.Services.AddSingleton(sp => new StreamMessageQuota(rate, options, sp.GetRequiredService<QuotaMetrics>()));
        builder.Services.AddRateLimiter(limiter =>
        {
            limiter.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                rate,
                PartitionedRateLimiter.Create<HttpContext, string>(context => ConcurrencyPartition(context, options)));
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.OnRejected = (rejected, _) => new ValueTask(Refuse(rejected, options));
        });
        return builder;
    }

    /// <summary>After authentication, so calls count against their principal; health and reflection pass untouched.</summary>
    public static WebApplication UseJacServiceQuotas(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<QuotaOptions>>().Value.Enabled) app.UseRateLimiter();
        return app;
    }

    private static RateLimitPartition<string> RatePartition(HttpContext context, QuotaOptions options)
    {
        if (QuotaCaller.IsExempt(context)) return RateLimitPartition.GetNoLimiter("");
        var caller = QuotaCaller.Of(context, options);
        if (caller.Limits.RequestsPerSecond == 0) return RateLimitPartition.GetNoLimiter(caller.Key);
        return RateLimitPartition.GetTokenBucketLimiter(caller.Key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = caller.Limits.EffectiveBurst,
            TokensPerPeriod = caller.Limits.RequestsPerSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
        });
    }

    private static RateLimitPartition<string> ConcurrencyPartition(HttpContext context, QuotaOptions options)
    {
        if (QuotaCaller.IsExempt(context)) return RateLimitPartition.GetNoLimiter("");
        var caller = QuotaCaller.Of(context, options);
        if (caller.Limits.ConcurrentRequests == 0) return RateLimitPartition.GetNoLimiter(caller.Key);
        return RateLimitPartition.GetConcurrencyLimiter(caller.Key, _ => new ConcurrencyLimiterOptions
        {
            PermitLimit = caller.Limits.ConcurrentRequests,
            QueueLimit = 0,
        });
    }

    private static Task Refuse(OnRejectedContext rejected, QuotaOptions options)
    {
        var context = rejected.HttpContext;
        var caller = QuotaCaller.Of(context, options);
        // Only the token bucket says when a permit comes back; the concurrency limiter cannot know.
        bool rate = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter);
        context.RequestServices.GetRequiredService<QuotaMetrics>().Refused(caller.Quota, rate ? "rate" : "concurrency");
        bool rest = OpenInferenceRoute.Of(context) is not null;
        if (!(rest || GrpcRefusal.IsGrpc(context))) return Task.CompletedTask;
        string message;
        if (rate)
        {
            long milliseconds = Math.Max(1, (long)Math.Ceiling(retryAfter.TotalMilliseconds));
            // retry-after for people and proxies; grpc-retry-pushback-ms for gRPC clients whose retry policy covers RESOURCE_EXHAUSTED.
            context.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            context.Response.Headers[GrpcRefusal.RetryPushbackHeader] = milliseconds.ToString(CultureInfo.InvariantCulture);
            message = $"quota exceeded: {caller.RateText}; retry in {milliseconds} ms";
        }
        else
        {
            message = $"quota exceeded: {caller.Who} may have {caller.Limits.ConcurrentRequests} calls in progress at once; retry when one has finished";
        }
        context.RequestServices.GetRequiredService<CallerErrorLog>().Report(nameof(StatusCode.ResourceExhausted), RpcGroups.MethodOf(context), message);
        // HTTP 429 with Retry-After, as REST clients expect it.
        if (rest) return RestError.WriteAsync(context.Response, StatusCode.ResourceExhausted, message);
        // A trailers-only gRPC answer: HTTP 200 with the status in the headers, as every gRPC error is sent.
        context.Response.StatusCode = StatusCodes.Status200OK;
        GrpcRefusal.Write(context.Response, StatusCode.ResourceExhausted, message);
        return Task.CompletedTask;
    }
}
