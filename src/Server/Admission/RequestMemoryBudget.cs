using System.Diagnostics.Metrics;
using System.Globalization;
using JacService.Server.Execution;
using Microsoft.Extensions.Options;

namespace JacService.Server.Admission;

/// <summary>
/// The bytes of request messages held at once, all calls together, against Limits:MaxRequestMiBInFlight. Each call's
/// message is the most a caller can make the server hold (twice over: the bytes, then the parsed tensors), and without
/// a bound 32 concurrent 58 MB Predicts took the server from 1.0 to 4.6 GB resident; more connections, more memory.
/// A message is taken whatever its size when nothing else is held, so none is refused for its size alone, and one of up
/// to 1 MiB is always taken: a client that sends a few large messages' prefixes and then trickles their bodies (at
/// Kestrel's minimum data rate) holds the budget for as long, and would otherwise shut out every call. The middleware
/// holds a unary call's message, JacobianStreams each message of a stream.
/// </summary>
public sealed class RequestMemoryBudget
{
    /// <summary>Messages up to this size are always taken (and held): what single samples and ordinary batches send.</summary>
    public const long AlwaysTakenBytes = 1 << 20;

    private readonly long _limit;
    private readonly Counter<long> _refusals;
    private long _held;

    /// <param name="meter">The JacService meter, where the budget's gauge and refusal counter go.</param>
    public RequestMemoryBudget(IOptions<LimitsOptions> limits, Meter meter)
    {
        _limit = (long)limits.Value.MaxRequestMiBInFlight << 20;
        _refusals = meter.CreateCounter<long>("jacservice.request_memory.refusals", "{call}",
            "Calls refused with RESOURCE_EXHAUSTED, unread, because their message would have passed Limits:MaxRequestMiBInFlight");
        meter.CreateObservableGauge("jacservice.request_memory.held", () => Interlocked.Read(ref _held), "By",
            "Bytes of request messages held by calls in progress, counted from each message's length prefix");
    }

    public long Held => Interlocked.Read(ref _held);

    /// <summary>Holds <paramref name="bytes"/> and returns true, or returns false and holds nothing.</summary>
    public bool TryHold(long bytes)
    {
        while (true)
        {
            long held = Interlocked.Read(ref _held);
            if (bytes > AlwaysTakenBytes && held > 0 && held + bytes > _limit)
            {
                _refusals.Add(1);
                return false;
            }
            if (Interlocked.CompareExchange(ref _held, held + bytes, held) == held) return true;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref _held, -bytes);

    /// <summary>What a caller refused for <paramref name="bytes"/> is told.</summary>
    public string Refusal(long bytes) =>
        $"the server holds {Mib(Held)} MiB of request messages, and this call's {Mib(bytes)} MiB would pass " +
        $"Limits:MaxRequestMiBInFlight ({Mib(_limit)} MiB); retry when calls in progress have answered";

    private static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("F1", CultureInfo.InvariantCulture);
}
