namespace JacService.Server.Batching;

/// <summary>
/// Cancelled once every caller of a running batch has gone (cancelled, or past its deadline, which gRPC reports as a
/// cancellation), so the engine stops the batch between ops instead of computing results nobody will read. A caller
/// that cannot cancel (warm-up) keeps the batch alive to the end.
/// </summary>
internal sealed class BatchAbandonment : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly List<CancellationTokenRegistration> _registrations = [];
    private int _callersLeft;

    public BatchAbandonment(IEnumerable<PendingRequest> callers)
    {
        var distinct = callers.Distinct().ToList();
        if (distinct.Any(c => !c.Cancellation.CanBeCanceled)) return;
        _callersLeft = distinct.Count;
        // Registering on a token already cancelled runs the callback at once, so a caller gone meanwhile counts too.
        foreach (var caller in distinct) _registrations.Add(caller.Cancellation.Register(CallerGone));
    }

    public CancellationToken Token => _source.Token;

    public bool IsAbandoned => _source.IsCancellationRequested;

    private void CallerGone()
    {
        if (Interlocked.Decrement(ref _callersLeft) == 0) _source.Cancel();
    }

    public void Dispose()
    {
        foreach (var registration in _registrations) registration.Dispose();
        _source.Dispose();
    }
}
