namespace JacService.Server.Models;

/// <summary>
/// A call's hold on the version it resolved: the version's snapshot stays alive (and its batcher takes the call's
/// requests) until the lease is disposed, even if a newer version takes over or the folder is removed meanwhile.
/// </summary>
public sealed class ModelLease(ModelEntry entry) : IDisposable
{
    private int _disposed;

    public ModelEntry Entry => entry;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) entry.Lifetime!.Release();
    }
}
