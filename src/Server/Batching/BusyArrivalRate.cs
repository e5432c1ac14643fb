namespace JacService.Server.Batching;

/// <summary>
/// How often requests arrive while a model version is busy (rows queued or a batch running), per second of busy time,
/// with older busy time weighing less (an exponential memory of <paramref name="memory"/> of busy time).
/// Arrivals at an idle model are not counted: a lone caller in a loop always finds the model idle, because its next
/// request comes after the answer to the last, so it could never have shared a batch however long the batcher waited.
/// For independent arrivals at rate λ, arrivals seen while busy still come at λ, so the estimate is what waiting
/// for company can expect. Not thread-safe: the batch queue calls it under the batcher's lock.
/// </summary>
public sealed class BusyArrivalRate(TimeSpan memory)
{
    private readonly double _memorySeconds = memory.TotalSeconds;
    private double _arrivals, _busySeconds;
    private DateTimeOffset? _busySince;

    public bool IsBusy => _busySince is not null;

    /// <summary>A request arrived; counted when the model was already busy.</summary>
    public void Arrived(DateTimeOffset now)
    {
        if (_busySince is null) return;
        Accrue(now);
        _arrivals += 1;
    }

    /// <summary>The model is busy from now (no effect when it already was).</summary>
    public void BecameBusy(DateTimeOffset now) => _busySince ??= now;

    /// <summary>The model has nothing queued and nothing running from now.</summary>
    public void BecameIdle(DateTimeOffset now)
    {
        if (_busySince is null) return;
        Accrue(now);
        _busySince = null;
    }

    /// <summary>Arrivals per second of busy time, 0 until any busy time has been seen.</summary>
    public double PerSecond(DateTimeOffset now)
    {
        if (_busySince is not null) Accrue(now);
        return _busySeconds > 0 ? _arrivals / _busySeconds : 0;
    }

    private void Accrue(DateTimeOffset now)
    {
        double dt = Math.Max(0, (now - _busySince!.Value).TotalSeconds);
        _busySince = now;
        if (dt == 0) return;
        // Both sums decay over busy time, so the ratio is a rate over roughly the last `memory` of busy time.
        double keep = Math.Exp(-dt / _memorySeconds);
        _arrivals *= keep;
        _busySeconds = _busySeconds * keep + _memorySeconds * (1 - keep);
    }
}
