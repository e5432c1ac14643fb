using JacService.Core;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Options;

namespace JacService.Server.Models;

/// <summary>
/// Scans the repository at start and loads every version. A version that cannot load is recorded as FAILED with
/// the reason; nothing a model file holds stops the others from loading or the server from serving.
/// </summary>
public sealed partial class ModelRepositoryLoader(
    ModelRegistry registry,
    IOptions<ModelRepositoryOptions> repository,
    IOptions<BatchingOptions> batching,
    EngineLimits limits,
    TimeProvider clock,
    JacServiceMetrics metrics,
    IHostApplicationLifetime lifetime,
    ILogger<ModelRepositoryLoader> logger) : BackgroundService
{
    public const string ModelFileName = "model.onnx";
    public const string ConfigFileName = "config.json";

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        // Kestrel has stopped taking calls by now; what is queued finishes within the grace period.
        await registry.ShutdownAsync(batching.Value.DrainTimeout);
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        // Kestrel waits for calls in flight before hosted services stop: the batchers must start draining at the
        // signal, or queued calls would sit out their max delay while Kestrel waits for them.
        lifetime.ApplicationStopping.Register(registry.BeginDrain);
        var root = repository.Value.FullRoot;
        var found = ByVersionPolicy(Scan(root));
        foreach (var (name, version, _, _) in found) registry.Set(ModelEntry.Loading(name, version));
        LogScanned(found.Count, root);

        foreach (var (name, version, path, config) in found)
        {
            if (stoppingToken.IsCancellationRequested) return;
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            var entry = Load(name, version, path, config);
            double loadSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
            double warmupSeconds = 0;
            if (entry.State == ModelState.Ready && repository.Value.Warmup) (entry, warmupSeconds) = Warm(entry, stoppingToken);
            metrics.RecordModelLoad(name, entry.State, loadSeconds + warmupSeconds);
            registry.Set(entry with { LoadedAt = clock.GetUtcNow(), LoadSeconds = loadSeconds, WarmupSeconds = warmupSeconds });
        }
        registry.MarkRepositoryLoaded();
        LogRepositoryLoaded(registry.Entries.Count(e => e.State == ModelState.Ready), registry.Entries.Count);
    }, stoppingToken);

    /// <summary>
    /// Reads each model's config.json once and keeps the versions its policy serves (its own, or Models:VersionPolicy);
    /// the others are not loaded. A config.json that does not read keeps every version, and each then fails to load
    /// with the file's error.
    /// </summary>
    private List<(string Name, int Version, string Path, ConfigRead Config)> ByVersionPolicy(List<(string Name, int Version, string Path)> found)
    {
        var served = new List<(string, int, string, ConfigRead)>();
        foreach (var model in found.GroupBy(f => f.Name))
        {
            ConfigRead config;
            try
            {
                config = new ConfigRead(ModelConfig.Load(Path.Combine(repository.Value.FullRoot, model.Key, ConfigFileName), Defaults), null);
            }
            catch (InvalidDataException e)
            {
                config = new ConfigRead(null, e);
            }
            var policy = config.Config?.VersionPolicy ?? VersionPolicy.Default;
            var versions = policy.Select(model.Select(m => m.Version).ToList());
            served.AddRange(model.Where(m => versions.Contains(m.Version)).Select(m => (m.Name, m.Version, m.Path, config)));
            foreach (var skipped in model.Where(m => !versions.Contains(m.Version))) LogOutsidePolicy(model.Key, skipped.Version, policy.ToString());
            foreach (var missing in policy.Specific.Where(v => model.All(m => m.Version != v))) LogPolicyVersionMissing(model.Key, missing, policy.ToString());
        }
        return served;
    }

    private ModelConfig Defaults => ModelConfig.ServerDefaults(batching.Value, repository.Value.VersionPolicy);

    /// <summary>A model's config.json as read once for all its versions: the settings, or why the file was refused.</summary>
    private sealed record ConfigRead(ModelConfig? Config, InvalidDataException? Error);

    private List<(string Name, int Version, string Path)> Scan(string root)
    {
        var found = new List<(string, int, string)>();
        foreach (var modelDir in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(modelDir);
            foreach (var versionDir in Directory.EnumerateDirectories(modelDir))
            {
                var folder = Path.GetFileName(versionDir);
                if (int.TryParse(folder, out int version) && version > 0 && folder == version.ToString())
                    found.Add((name, version, Path.Combine(versionDir, ModelFileName)));
                else
                    LogIgnoredFolder(versionDir);
            }
        }
        return found.OrderBy(f => f.Item1, StringComparer.Ordinal).ThenBy(f => f.Item2).ToList();
    }

    private ModelEntry Load(string name, int version, string path, ConfigRead read)
    {
        try
        {
            if (!File.Exists(path)) throw new ModelLoadException($"{ModelFileName} not found in {Path.GetDirectoryName(path)}");
            var config = read.Config ?? throw new InvalidDataException(read.Error!.Message, read.Error);
            var model = ModelVersion.Load(name, version, File.ReadAllBytes(path), limits);
            LogLoaded(name, version, model.Inputs.Count, model.Outputs.Count, model.Graph.Nodes.Length, model.PredictRuntime);
            if (model.PredictRuntimeNote.Length > 0) LogPredictInEngine(name, version, model.PredictRuntimeNote);
            return new ModelEntry(name, version, ModelState.Ready, "", model, new ModelBatcher(model, config.Batching, clock, metrics))
            {
                DefaultMode = config.DerivativeMode,
            };
        }
        catch (Exception e) when (e is ModelLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
        {
            LogFailed(name, version, e.Message);
            return new ModelEntry(name, version, ModelState.Failed, e.Message, null, null);
        }
        catch (Exception e)
        {
            // Anything else is our bug, but one model's bug must not take the others down.
            LogFailedUnexpectedly(e, name, version);
            return new ModelEntry(name, version, ModelState.Failed, $"internal error while loading: {e.Message}", null, null);
        }
    }

    /// <summary>Warms the version up: the entry to register (FAILED, its model freed, when the warm-up failed) and the seconds it took.</summary>
    private (ModelEntry, double) Warm(ModelEntry entry, CancellationToken stoppingToken)
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        var outcome = ModelWarmup.RunAsync(entry, stoppingToken).GetAwaiter().GetResult();
        var took = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        if (outcome.Skipped is { } reason) LogWarmupSkipped(entry.Name, entry.Version, reason);
        if (outcome.Failure is not { } failure)
        {
            if (outcome.Skipped is null) LogWarmedUp(entry.Name, entry.Version, took.TotalMilliseconds);
            return (entry, took.TotalSeconds);
        }
        LogWarmupFailed(entry.Name, entry.Version, failure);
        entry.Batcher!.DisposeAsync().AsTask().GetAwaiter().GetResult();
        entry.Model!.Dispose();
        return (new ModelEntry(entry.Name, entry.Version, ModelState.Failed, $"warm-up failed: {failure}", null, null), took.TotalSeconds);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Model} version {Version} failed its warm-up and is not served: {Reason}")]
    private partial void LogWarmupFailed(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Warmed up {Model} version {Version} in {Milliseconds:F0} ms")]
    private partial void LogWarmedUp(string model, int version, double milliseconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Warm-up of {Model} version {Version} skipped: {Reason}; its first calls pay for planning and compilation")]
    private partial void LogWarmupSkipped(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Not loading {Model} version {Version}: outside its version policy ({Policy})")]
    private partial void LogOutsidePolicy(string model, int version, string policy);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Model} has no version {Version}, which its version policy ({Policy}) names")]
    private partial void LogPolicyVersionMissing(string model, int version, string policy);

    [LoggerMessage(Level = LogLevel.Information, Message = "Found {Count} model versions under {Root}")]
    private partial void LogScanned(int count, string root);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignoring {Folder}: version folders are positive integers")]
    private partial void LogIgnoredFolder(string folder);

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Model} version {Version}: {Inputs} inputs, {Outputs} outputs, {Nodes} nodes; Predict runs in {PredictRuntime}")]
    private partial void LogLoaded(string model, int version, int inputs, int outputs, int nodes, string predictRuntime);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Predict for {Model} version {Version} falls back to the engine: {Reason}")]
    private partial void LogPredictInEngine(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} version {Version} failed to load: {Reason}")]
    private partial void LogFailed(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} version {Version} failed to load with an unexpected error")]
    private partial void LogFailedUnexpectedly(Exception exception, string model, int version);

    [LoggerMessage(Level = LogLevel.Information, Message = "Repository loaded: {Ready} of {Total} model versions ready")]
    private partial void LogRepositoryLoaded(int ready, int total);
}
