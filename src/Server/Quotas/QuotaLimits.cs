namespace JacService.Server.Quotas;

/// <summary>The limits of one principal (or of one anonymous caller's address). 0 means no limit of that kind.</summary>
public sealed class QuotaLimits
{
    /// <summary>Calls per second, on average (a token bucket refilled each second).</summary>
    public int RequestsPerSecond { get; set; }

    /// <summary>Calls that may arrive at once after a quiet spell (the bucket's size). Unset: one second's worth.</summary>
    public int? Burst { get; set; }

    /// <summary>Calls in progress at once (a stream counts until it ends).</summary>
    public int ConcurrentRequests { get; set; }

    public int EffectiveBurst => Burst ?? RequestsPerSecond;

    /// <summary>Problems with these limits, each naming the setting under <paramref name="at"/>.</summary>
    public IEnumerable<string> Problems(string at)
    {
        if (RequestsPerSecond < 0) yield return $"{at}:RequestsPerSecond must be 0 (no limit) or more, got {RequestsPerSecond}";
        if (ConcurrentRequests < 0) yield return $"{at}:ConcurrentRequests must be 0 (no limit) or more, got {ConcurrentRequests}";
        if (Burst is { } burst && RequestsPerSecond == 0) yield return $"{at}:Burst needs RequestsPerSecond";
        else if (Burst is < 1) yield return $"{at}:Burst must be at least 1, got {Burst}";
    }
}
