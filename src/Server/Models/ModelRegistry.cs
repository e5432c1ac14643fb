using System.Collections.Immutable;
using JacService.Core;
using JacService.Server.Grpc;

namespace JacService.Server.Models;

/// <summary>
/// The listed model versions. The whole table is an immutable snapshot swapped atomically, so readers never lock
/// and a request resolves against one consistent view: a take-over (a new READY version, or a reloaded snapshot of
/// the same one) is one swap. A snapshot that leaves the table is retired, and freed once its last call has ended.
/// </summary>
public sealed class ModelRegistry(TimeProvider clock) : IDisposable
{
    private ImmutableSortedDictionary<(string Name, int Version), ModelEntry> _entries =
        ImmutableSortedDictionary<(string, int), ModelEntry>.Empty;
    // Each name's versions in ascending order, rebuilt with every change: a request finds its model without a scan.
    private ImmutableDictionary<string, ModelEntry[]> _byName = ImmutableDictionary<string, ModelEntry[]>.Empty;
    // Snapshots out of the table whose calls have not all ended; shutdown waits for them too.
    private ImmutableHashSet<VersionLifetime> _retiring = [];
    private readonly object _writeLock = new();
    private volatile bool _repositoryLoaded;

    /// <summary>True once every version found at start has finished loading (READY or FAILED).</summary>
    public bool RepositoryLoaded => _repositoryLoaded;

    public IReadOnlyList<ModelEntry> Entries => _entries.Values.ToList();

    /// <summary>Retired snapshots still held by calls.</summary>
    public int Retiring => _retiring.Count;

    /// <summary>Raised after every change of the table, on the thread that made it.</summary>
    public event Action? Changed;

    /// <summary>
    /// Lists the entry, in place of the one of its name and version. A state change, or a new snapshot, is added to the
    /// version's history with <paramref name="note"/>; a snapshot the entry replaces is retired.
    /// </summary>
    public ModelEntry Set(ModelEntry entry, string note = "")
    {
        VersionLifetime? replaced = null;
        lock (_writeLock)
        {
            var key = (entry.Name, entry.Version);
            if (_entries.TryGetValue(key, out var previous))
            {
                entry = entry with { History = previous.History };
                if (previous.Lifetime is { } old && !ReferenceEquals(old, entry.Lifetime)) replaced = old;
            }
            if (previous is null || previous.State != entry.State || replaced is not null || note.Length > 0)
                entry = entry with { History = entry.History.Add(new ModelStateChange(clock.GetUtcNow(), entry.State, note.Length > 0 ? note : entry.Error)) };
            _entries = _entries.SetItem(key, entry);
            Rebuild();
            if (replaced is not null) _retiring = _retiring.Add(replaced);
        }
        if (replaced is not null) Retire(replaced);
        Changed?.Invoke();
        return entry;
    }

    /// <summary>Unlists a version; its snapshot is freed when its last call ends (the returned task).</summary>
    public Task Remove(string name, int version)
    {
        ModelEntry? removed;
        lock (_writeLock)
        {
            if (!_entries.TryGetValue((name, version), out removed)) return Task.CompletedTask;
            _entries = _entries.Remove((name, version));
            Rebuild();
            if (removed.Lifetime is { } lifetime) _retiring = _retiring.Add(lifetime);
        }
        Changed?.Invoke();
        return removed.Lifetime is { } retired ? Retire(retired) : Task.CompletedTask;
    }

    private Task Retire(VersionLifetime lifetime)
    {
        lifetime.Retire();
        return lifetime.Freed.ContinueWith(_ =>
        {
            lock (_writeLock) _retiring = _retiring.Remove(lifetime);
        }, TaskScheduler.Default);
    }

    private void Rebuild() =>
        _byName = _entries.Values.GroupBy(e => e.Name).ToImmutableDictionary(g => g.Key, g => g.ToArray());

    public void MarkRepositoryLoaded()
    {
        _repositoryLoaded = true;
        Changed?.Invoke();
    }

    /// <summary>True where the table has a version of the name, in any state.</summary>
    public bool Lists(string name) => _byName.ContainsKey(name);

    /// <summary>The entry for a name and version text ("" = highest READY version, else the highest found).</summary>
    public ModelEntry Find(string name, string version)
    {
        if (!_byName.TryGetValue(name, out var versions))
        {
            throw new ModelNotFoundException($"model {CallerText.Quote(name)} not found; the repository has {KnownNames()}");
        }
        if (string.IsNullOrEmpty(version))
        {
            for (int i = versions.Length - 1; i >= 0; i--)
                if (versions[i].State == ModelState.Ready) return versions[i];
            return versions[^1];
        }
        if (!int.TryParse(version, out int v) || v <= 0)
            throw new ModelNotFoundException($"version {CallerText.Quote(version)} of model '{name}' not found; versions are positive integers");
        return Array.Find(versions, e => e.Version == v)
            ?? throw new ModelNotFoundException(
                $"version {v} of model '{name}' not found; it has versions {string.Join(", ", versions.Select(e => e.Version))}");
    }

    // A repository of thousands of models would make every NOT_FOUND message as long; ListModels lists them all.
    private const int NamesInMessage = 20;

    private string KnownNames()
    {
        var known = _byName.Keys.Order(StringComparer.Ordinal).ToList();
        if (known.Count == 0) return "no models";
        var shown = string.Join(", ", known.Take(NamesInMessage));
        return known.Count <= NamesInMessage ? shown : $"{shown} and {known.Count - NamesInMessage} more (ListModels lists them)";
    }

    /// <summary>
    /// A READY version held for one call (dispose the lease when the call has answered), or the exception that says why
    /// it cannot serve. A snapshot retired between the look-up and the hold is looked up again: the table no longer
    /// lists it, so the call lands on what took over.
    /// </summary>
    public ModelLease Acquire(string name, string version)
    {
        while (true)
        {
            var entry = Find(name, version);
            switch (entry.State)
            {
                case ModelState.Ready:
                    if (entry.Lifetime!.TryAcquire()) return new ModelLease(entry);
                    continue;
                case ModelState.Loading:
                    throw new ModelUnavailableException($"model '{name}' version {entry.Version} is still loading");
                default:
                    throw new ModelFailedException($"model '{name}' version {entry.Version} failed to load: {entry.Error}");
            }
        }
    }

    /// <summary>Every batcher stops taking requests and runs what it has queued at once.</summary>
    public void BeginDrain()
    {
        foreach (var lifetime in Lifetimes()) lifetime.Batcher.BeginDrain();
    }

    private List<VersionLifetime> Lifetimes()
    {
        lock (_writeLock) return [.. _entries.Values.Select(e => e.Lifetime).OfType<VersionLifetime>(), .. _retiring];
    }

    /// <summary>Lets every batcher finish what it has queued (up to the grace period), then frees the models.</summary>
    public async Task ShutdownAsync(TimeSpan grace)
    {
        var lifetimes = Lifetimes();
        await Task.WhenAll(lifetimes.Select(l => l.Batcher.DrainAsync(grace)));
        await Task.WhenAll(lifetimes.Select(l => l.ForceFreeAsync()));
        lock (_writeLock) (_entries, _byName, _retiring) = (_entries.Clear(), _byName.Clear(), _retiring.Clear());
    }

    public void Dispose() => ShutdownAsync(TimeSpan.Zero).GetAwaiter().GetResult();
}
