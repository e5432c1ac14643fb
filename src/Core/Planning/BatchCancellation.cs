namespace JacService.Core.Planning;

/// <summary>
/// Whether the batch running on this thread may stop: the server sets it around each batch (every caller of the batch
/// gone), and every pass checks it between nodes, so an abandoned Hessian or a CNN's forward-mode Jacobian stops
/// within one op instead of running on for minutes after its callers have left. Per thread, as TorchSharp's dispose
/// scopes and inference mode are: a batch runs from start to end on one executor thread.
/// </summary>
public static class BatchCancellation
{
    [ThreadStatic]
    private static CancellationToken _current;

    /// <summary>Makes <paramref name="cancellation"/> the running batch's until the returned scope is disposed.</summary>
    public static Scope Enter(CancellationToken cancellation)
    {
        var previous = _current;
        _current = cancellation;
        return new Scope(previous);
    }

    /// <summary>The running batch's token (none outside a batch): for work that cannot stop between ops itself.</summary>
    public static CancellationToken Current => _current;

    /// <summary>Throws <see cref="OperationCanceledException"/> once the running batch has been abandoned.</summary>
    public static void ThrowIfRequested() => _current.ThrowIfCancellationRequested();

    public readonly struct Scope(CancellationToken previous) : IDisposable
    {
        public void Dispose() => _current = previous;
    }
}
