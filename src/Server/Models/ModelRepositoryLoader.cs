using System.Diagnostics;
using JacService.Core.Models;
using JacService.Server.Grpc;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Options;

namespace JacService.Server.Models;

/// <summary>
/// Keeps the registry in step with the repository. At start it loads every version its policy serves; then, with
/// Models:PollSeconds set, it looks again every interval and loads new or changed versions, retires removed ones and
/// those a newer READY version pushes out of the policy, all on its own thread while every listed version keeps
/// serving. A folder is taken once its files held still for a whole interval (or carry the COMPLETE marker), so a copy
/// in progress is waited for, not reported FAILED; a version that did fail is tried again when its files change. A
/// new snapshot takes over in one registry swap, and only when READY: a failed load or reload leaves what served
/// before serving. ModelControl's explicit loads and unloads take the same lock as a poll.
/// </summary>
public sealed partial class ModelRepositoryLoader(
    ModelRegistry registry,
    RepositoryScanner scanner,
    VersionLoader loader,
    IOptions<ModelRepositoryOptions> repository,
    IOptions<Batching.BatchingOptions> batching,
    JacServiceMetrics metrics,
    IHostApplicationLifetime lifetime,
    ILogger<ModelRepositoryLoader> logger) : BackgroundService
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    // The stamp each listed version was built from: equal stamps mean nothing to do.
    private readonly Dictionary<(string, int), VersionStamp> _listedFrom = [];
    // The stamp a new or changed version had when a poll first saw it, and when: it is taken once a poll sees the same
    // stamp a whole interval later. By time, not by polls: a PeriodicTimer that fell behind (a long load in the tick
    // before) fires its next tick at once, and two scans milliseconds apart would take a copy in progress as finished.
    private readonly Dictionary<(string, int), (VersionStamp Stamp, long SeenAt)> _pending = [];
    private readonly HashSet<(string, int)> _reportedOutside = [];
    // Models ModelControl unloaded: polls leave them alone until it loads them again.
    private readonly HashSet<string> _unloaded = [];
    private CancellationToken _stopping;

    private VersionPolicy ServerPolicy => repository.Value.VersionPolicy;

    /// <summary>
    /// Loading leaves garbage of a few times each file's size (its bytes, the protobufs parsed from them), which the
    /// collector keeps committed for the next allocations: a server with ConvNeXt-Tiny (108 MB) loaded held 947 MiB, 778
    /// MiB after a collection that compacts and decommits (16 ms); eight torchvision classifiers warmed up, 4.7 -> 4.3
    /// GiB. That collection stops every thread, so it runs once, before the server reports SERVING, while probes keep
    /// traffic away; later loads leave theirs to the collector's own pace.
    /// </summary>
    private void GiveBackWhatLoadingUsed()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        NativeHeap.ReturnFreePages();
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        // Kestrel has stopped taking calls by now; what is queued finishes within the grace period.
        await registry.ShutdownAsync(batching.Value.DrainTimeout);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Kestrel waits for calls in flight before hosted services stop: the batchers must start draining at the
        // signal, or queued calls would sit out their max delay while Kestrel waits for them.
        lifetime.ApplicationStopping.Register(registry.BeginDrain);
        _stopping = stoppingToken;
        await UnderGate(() =>
        {
            var found = scanner.Scan();
            foreach (var model in found)
                foreach (int version in model.InPolicy(model.Versions.Select(v => v.Version), ServerPolicy))
                    registry.Set(ModelEntry.Loading(model.Name, version));
            LogScanned(found.Sum(m => m.Versions.Count), scanner.Root);
            Reconcile(found, immediate: true);
        }, stoppingToken);
        GiveBackWhatLoadingUsed();
        registry.MarkRepositoryLoaded();
        LogRepositoryLoaded(registry.Entries.Count(e => e.State == ModelState.Ready), registry.Entries.Count);

        if (repository.Value.PollInterval is not { } interval) return;
        LogPolling(interval.TotalSeconds, RepositoryScanner.CompleteMarker);
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await UnderGate(() => Reconcile(scanner.Scan(), immediate: false), stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Loads (or reloads) a model's versions now, without waiting for its files to hold still, and lets polls manage it
    /// again if it was unloaded. The model's entries afterwards.
    /// </summary>
    public async Task<IReadOnlyList<ModelEntry>> LoadModelAsync(string name, CancellationToken cancellation)
    {
        CheckName(name);
        await UnderGate(() =>
        {
            var model = scanner.ScanModel(name)
                ?? throw new ModelNotFoundException($"the repository {scanner.Root} has no folder {Core.CallerText.Quote(name)}");
            lock (_unloaded) _unloaded.Remove(name);
            ReconcileModel(model, immediate: true);
        }, cancellation);
        return registry.Entries.Where(e => e.Name == name).ToList();
    }

    /// <summary>
    /// Retires every version of a model (calls already holding one finish on it) and keeps polls from loading it again
    /// until <see cref="LoadModelAsync"/>. The versions retired.
    /// </summary>
    public async Task<IReadOnlyList<int>> UnloadModelAsync(string name, CancellationToken cancellation)
    {
        CheckName(name);
        var retired = new List<int>();
        await UnderGate(() =>
        {
            var listed = registry.Entries.Where(e => e.Name == name).ToList();
            if (listed.Count == 0 && scanner.ScanModel(name) is null)
                throw new ModelNotFoundException($"model {Core.CallerText.Quote(name)} is neither loaded nor in the repository {scanner.Root}");
            lock (_unloaded) _unloaded.Add(name);
            foreach (var entry in listed) Retire(entry, "unloaded through ModelControl");
            retired.AddRange(listed.Select(e => e.Version));
        }, cancellation);
        return retired;
    }

    /// <summary>True for a model ModelControl unloaded and has not loaded again.</summary>
    public bool IsUnloaded(string name)
    {
        lock (_unloaded) return _unloaded.Contains(name);
    }

    /// <summary>A model name is one folder directly under the root: nothing that could reach outside it.</summary>
    private static void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name is "." or ".." || name.IndexOfAny(['/', '\\']) >= 0 || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new Core.InvalidRequestException($"a model name is the name of one folder in the repository, got {Core.CallerText.Quote(name)}");
    }

    private async Task UnderGate(Action work, CancellationToken cancellation)
    {
        await _gate.WaitAsync(cancellation);
        try
        {
            await Task.Run(work, cancellation);
        }
        finally
        {
            _gate.Release();
        }
    }

    private void Reconcile(IReadOnlyList<FoundModel> found, bool immediate)
    {
        try
        {
            foreach (var model in found)
            {
                if (_stopping.IsCancellationRequested) return;
                if (!IsUnloaded(model.Name)) ReconcileModel(model, immediate);
            }
            var present = found.Select(m => m.Name).ToHashSet();
            foreach (var gone in registry.Entries.Where(e => !present.Contains(e.Name)).ToList())
                Retire(gone, "its model folder was removed");
            _pending.Keys.Where(k => !present.Contains(k.Item1)).ToList().ForEach(k => _pending.Remove(k));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A pass that fails (a folder vanishing mid-scan in a way not foreseen) is retried by the next poll.
            LogPassFailed(e);
        }
    }

    private void ReconcileModel(FoundModel model, bool immediate)
    {
        var name = model.Name;
        var inPolicy = model.InPolicy(model.Versions.Select(v => v.Version), ServerPolicy);
        ReportOutsidePolicy(model, inPolicy);
        int? latestBefore = LatestReady(name);
        foreach (var found in model.Versions.Where(v => inPolicy.Contains(v.Version)))
        {
            if (_stopping.IsCancellationRequested) return;
            var key = (name, found.Version);
            if (_listedFrom.TryGetValue(key, out var listed) && listed == found.Stamp && Listed(name, found.Version) is not null)
            {
                _pending.Remove(key);
                continue;
            }
            if (!immediate && !HeldStill(key, found)) continue;
            _pending.Remove(key);
            LoadVersion(model, found);
        }

        // Retire what left the repository or the policy. A READY version is pushed out only by READY ones: until the
        // newer version is up, the one it replaces keeps serving.
        var foundVersions = model.Versions.Select(v => v.Version).ToHashSet();
        var entries = registry.Entries.Where(e => e.Name == name).ToList();
        var serving = model.InPolicy(entries.Where(e => e.State == ModelState.Ready && foundVersions.Contains(e.Version)).Select(e => e.Version), ServerPolicy);
        foreach (var entry in entries)
        {
            string? why = !foundVersions.Contains(entry.Version) ? "its version folder was removed"
                : entry.State == ModelState.Ready ? (serving.Contains(entry.Version) ? null : $"outside its version policy ({model.Policy(ServerPolicy)})")
                : inPolicy.Contains(entry.Version) ? null : $"outside its version policy ({model.Policy(ServerPolicy)})";
            if (why is not null) Retire(entry, why);
        }
        foreach (var key in _pending.Keys.Where(k => k.Item1 == name && !foundVersions.Contains(k.Item2)).ToList()) _pending.Remove(key);

        int? latestAfter = LatestReady(name);
        // A model's first version is no take-over: its load was logged.
        if (latestAfter is { } after && latestBefore is { } before && after != before) LogTookOver(name, after, before);
    }

    /// <summary>
    /// True once the version's files are there and have not changed for a whole poll interval (or the folder carries
    /// the marker); until then the stamp and when it was first seen are remembered for the next look.
    /// </summary>
    private bool HeldStill((string, int) key, FoundVersion found)
    {
        if (found.Stamp.Model is null) return false;
        if (found.Marked) return true;
        if (_pending.TryGetValue(key, out var seen) && seen.Stamp == found.Stamp)
            return Stopwatch.GetElapsedTime(seen.SeenAt) >= (repository.Value.PollInterval ?? TimeSpan.Zero);
        _pending[key] = (found.Stamp, Stopwatch.GetTimestamp());
        return false;
    }

    private void LoadVersion(FoundModel model, FoundVersion found)
    {
        var (name, version) = (model.Name, found.Version);
        var current = Listed(name, version);
        string cause = current is null || current.State == ModelState.Loading ? ""
            : _listedFrom.TryGetValue((name, version), out var before) && before.Config != found.Stamp.Config ? "reloaded: config.json changed"
            : "reloaded: model.onnx changed";
        bool serving = current?.State == ModelState.Ready;
        if (!serving) registry.Set(ModelEntry.Loading(name, version), cause);
        long started = Stopwatch.GetTimestamp();
        // The snapshot whose callers this one inherits: the one it reloads, else the latest that serves now.
        var replaced = serving ? current : registry.Entries.LastOrDefault(e => e.Name == name && e.State == ModelState.Ready);
        var entry = loader.Load(name, found, model.Config, replaced?.Model, _stopping);
        _listedFrom[(name, version)] = found.Stamp;
        if (entry.State == ModelState.Ready || !serving)
        {
            registry.Set(entry, entry.State == ModelState.Ready ? cause : "");
            if (!serving) return;
            metrics.RecordRetirement(name);
            LogReloaded(name, version, cause, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return;
        }
        // A reload that failed: the snapshot that served keeps serving, and says why it was not replaced.
        registry.Set(current! with { Error = $"a reload failed and the previous snapshot keeps serving: {entry.Error}" },
            $"reload failed: {entry.Error}");
        LogReloadFailed(name, version, entry.Error);
    }

    private void Retire(ModelEntry entry, string why)
    {
        _listedFrom.Remove((entry.Name, entry.Version));
        int calls = entry.Lifetime?.Calls ?? 0;
        long started = Stopwatch.GetTimestamp();
        var freed = registry.Remove(entry.Name, entry.Version);
        metrics.RecordRetirement(entry.Name);
        LogRetiring(entry.Name, entry.Version, why, calls);
        if (entry.Lifetime is not null)
            freed.ContinueWith(_ => LogFreed(entry.Name, entry.Version, Stopwatch.GetElapsedTime(started).TotalMilliseconds), TaskScheduler.Default);
    }

    private ModelEntry? Listed(string name, int version) => registry.Entries.FirstOrDefault(e => e.Name == name && e.Version == version);

    private int? LatestReady(string name) =>
        registry.Entries.Where(e => e.Name == name && e.State == ModelState.Ready).Select(e => (int?)e.Version).Max();

    private void ReportOutsidePolicy(FoundModel model, IReadOnlyList<int> inPolicy)
    {
        foreach (var found in model.Versions)
        {
            var key = (model.Name, found.Version);
            if (inPolicy.Contains(found.Version)) _reportedOutside.Remove(key);
            else if (_reportedOutside.Add(key)) LogOutsidePolicy(model.Name, found.Version, model.Policy(ServerPolicy));
        }
        if (model.Config.Config?.VersionPolicy is { } policy)
            foreach (int missing in policy.Specific.Where(v => model.Versions.All(f => f.Version != v)))
                if (_reportedOutside.Add((model.Name, -missing))) LogPolicyVersionMissing(model.Name, missing, policy.ToString());
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Not loading {Model} version {Version}: outside its version policy ({Policy})")]
    private partial void LogOutsidePolicy(string model, int version, string policy);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Model} has no version {Version}, which its version policy ({Policy}) names")]
    private partial void LogPolicyVersionMissing(string model, int version, string policy);

    [LoggerMessage(Level = LogLevel.Information, Message = "Found {Count} model versions under {Root}")]
    private partial void LogScanned(int count, string root);

    [LoggerMessage(Level = LogLevel.Information, Message = "Repository loaded: {Ready} of {Total} model versions ready")]
    private partial void LogRepositoryLoaded(int ready, int total);

    [LoggerMessage(Level = LogLevel.Information, Message = "Polling the repository every {Seconds} s; a version folder is taken once its files held still for one interval, or at once with a {Marker} file")]
    private partial void LogPolling(double seconds, string marker);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Model} version {Version} {Cause}; the new snapshot took over after {Milliseconds:F0} ms")]
    private partial void LogReloaded(string model, int version, string cause, double milliseconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "A reload of {Model} version {Version} failed; the previous snapshot keeps serving: {Reason}")]
    private partial void LogReloadFailed(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Model} version {Version} takes over as latest from version {Previous}")]
    private partial void LogTookOver(string model, int version, int previous);

    [LoggerMessage(Level = LogLevel.Information, Message = "Retiring {Model} version {Version}: {Why}; {Calls} calls still hold it")]
    private partial void LogRetiring(string model, int version, string why, int calls);

    [LoggerMessage(Level = LogLevel.Information, Message = "Freed {Model} version {Version} {Milliseconds:F0} ms after retiring it, when its last call had ended")]
    private partial void LogFreed(string model, int version, double milliseconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "A pass over the repository failed; the next poll tries again")]
    private partial void LogPassFailed(Exception exception);
}
