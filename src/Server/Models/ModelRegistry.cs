using System.Collections.Immutable;
using JacService.Core.Models;
using JacService.Server.Grpc;

namespace JacService.Server.Models;

/// <summary>
/// The loaded model versions. The whole table is an immutable snapshot swapped atomically, so readers never lock
/// and a request resolves against one consistent view.
/// </summary>
public sealed class ModelRegistry : IDisposable
{
    private ImmutableSortedDictionary<(string Name, int Version), ModelEntry> _entries =
        ImmutableSortedDictionary<(string, int), ModelEntry>.Empty;
    // Each name's versions in ascending order, rebuilt with every change: a request finds its model without a scan.
    private ImmutableDictionary<string, ModelEntry[]> _byName = ImmutableDictionary<string, ModelEntry[]>.Empty;
    private readonly object _writeLock = new();
    private volatile bool _repositoryLoaded;

    /// <summary>True once every version found at start has finished loading (READY or FAILED).</summary>
    public bool RepositoryLoaded => _repositoryLoaded;

    public IReadOnlyList<ModelEntry> Entries => _entries.Values.ToList();

    public void Set(ModelEntry entry)
    {
        lock (_writeLock)
        {
            _entries = _entries.SetItem((entry.Name, entry.Version), entry);
            _byName = _entries.Values.GroupBy(e => e.Name).ToImmutableDictionary(g => g.Key, g => g.ToArray());
        }
    }

    public void MarkRepositoryLoaded() => _repositoryLoaded = true;

    /// <summary>The entry for a name and version text ("" = highest READY version, else the highest found).</summary>
    public ModelEntry Find(string name, string version)
    {
        if (!_byName.TryGetValue(name, out var versions))
        {
            var known = _entries.Keys.Select(k => k.Name).Distinct().ToList();
            throw new ModelNotFoundException(
                $"model '{name}' not found; the repository has {(known.Count == 0 ? "no models" : string.Join(", ", known))}");
        }
        if (string.IsNullOrEmpty(version))
        {
            for (int i = versions.Length - 1; i >= 0; i--)
                if (versions[i].State == ModelState.Ready) return versions[i];
            return versions[^1];
        }
        if (!int.TryParse(version, out int v) || v <= 0)
            throw new ModelNotFoundException($"version '{version}' of model '{name}' not found; versions are positive integers");
        return Array.Find(versions, e => e.Version == v)
            ?? throw new ModelNotFoundException(
                $"version {v} of model '{name}' not found; it has versions {string.Join(", ", versions.Select(e => e.Version))}");
    }

    /// <summary>A READY model version (with its model and batcher), or the exception that says why it cannot serve.</summary>
    public ModelEntry Resolve(string name, string version)
    {
        var entry = Find(name, version);
        return entry.State switch
        {
            ModelState.Ready => entry,
            ModelState.Loading => throw new ModelUnavailableException($"model '{name}' version {entry.Version} is still loading"),
            _ => throw new ModelFailedException($"model '{name}' version {entry.Version} failed to load: {entry.Error}"),
        };
    }

    /// <summary>Every batcher stops taking requests and runs what it has queued at once.</summary>
    public void BeginDrain()
    {
        foreach (var entry in _entries.Values) entry.Batcher?.BeginDrain();
    }

    /// <summary>Lets every batcher finish what it has queued (up to the grace period), then frees the models.</summary>
    public async Task ShutdownAsync(TimeSpan grace)
    {
        var entries = _entries.Values.ToList();
        await Task.WhenAll(entries.Where(e => e.Batcher is not null).Select(e => e.Batcher!.DrainAsync(grace)));
        foreach (var entry in entries)
        {
            if (entry.Batcher is not null) await entry.Batcher.DisposeAsync();
            entry.Model?.Dispose();
        }
        lock (_writeLock) (_entries, _byName) = (_entries.Clear(), _byName.Clear());
    }

    public void Dispose() => ShutdownAsync(TimeSpan.Zero).GetAwaiter().GetResult();
}
