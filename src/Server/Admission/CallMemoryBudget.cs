using System.Diagnostics.Metrics;
using System.Globalization;
using JacService.Server.Execution;
using Microsoft.Extensions.Options;

namespace JacService.Server.Admission;

/// <summary>
/// The bytes held by calls in progress, all together, against Limits:MaxInFlightMiB: each call's request message (the
/// most a caller can make the server hold before any check, twice over: the bytes, then the parsed tensors) and its
/// result (held until written, which a slow reader makes long). Without a bound, 32 concurrent 58 MB Predicts took the
/// server from 1.0 to 4.6 GB resident, and 64 concurrent 128-row BatchJacobians of 128 MB results each to 18.8 GB.
/// A call takes what it needs whatever the size when no other call holds anything, so none is refused for its size
/// alone, and up to 1 MiB at a time always: a client that sends a few large messages' prefixes and then trickles their
/// bodies (at Kestrel's minimum data rate) holds the budget for as long, and would otherwise shut out every call.
/// </summary>
public sealed class CallMemoryBudget
{
    /// <summary>What a call takes at a time up to this size is always taken (and held): single samples and ordinary batches.</summary>
    public const long AlwaysTakenBytes = 1 << 20;

    private readonly long _limit;
    private readonly Counter<long> _refusals;
    private long _held;

    /// <param name="meter">The JacService meter, where the budget's gauge and refusal counter go.</param>
    public CallMemoryBudget(IOptions<LimitsOptions> limits, Meter meter)
    {
        _limit = (long)limits.Value.MaxInFlightMiB << 20;
        _refusals = meter.CreateCounter<long>("jacservice.call_memory.refusals", "{call}",
            "Calls (and stream messages) refused with RESOURCE_EXHAUSTED because their request message or result would have passed Limits:MaxInFlightMiB");
        // At 0 from the start, so the first refusal is an increase that rate() and the refusal alert see.
        _refusals.Add(0);
        meter.CreateObservableGauge("jacservice.call_memory.held", () => Interlocked.Read(ref _held), "By",
            "Bytes of request messages and results held by calls in progress");
    }

    public long Held => Interlocked.Read(ref _held);

    /// <summary>A call's hold, empty: what it takes is let go when it is disposed.</summary>
    public CallMemory Open() => new(this);

    /// <summary>Takes <paramref name="bytes"/> for a call already holding <paramref name="own"/>, or refuses and takes nothing.</summary>
    internal bool TryTake(long bytes, long own)
    {
        while (true)
        {
            long held = Interlocked.Read(ref _held);
            if (bytes > AlwaysTakenBytes && held > own && held + bytes > _limit)
            {
                _refusals.Add(1);
                return false;
            }
            if (Interlocked.CompareExchange(ref _held, held + bytes, held) == held) return true;
        }
    }

    internal void Release(long bytes) => Interlocked.Add(ref _held, -bytes);

    /// <summary>What a caller refused for <paramref name="bytes"/> of <paramref name="what"/> is told.</summary>
    public string Refusal(long bytes, string what) =>
        $"the server holds {Mib(Held)} MiB for calls in progress, and this call's {what} of {Mib(bytes)} MiB would pass " +
        $"Limits:MaxInFlightMiB ({Mib(_limit)} MiB); retry when calls in progress have answered";

    private static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("F1", CultureInfo.InvariantCulture);
}
