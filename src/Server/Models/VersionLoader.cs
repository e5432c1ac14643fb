using System.Diagnostics;
using JacService.Core;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Batching;
using JacService.Server.Telemetry;
using Microsoft.Extensions.Options;

namespace JacService.Server.Models;

/// <summary>
/// Builds one version's snapshot: reads, validates and plans model.onnx, starts its batcher and warms it up. What it
/// returns is READY (with the snapshot) or FAILED (with the reason); nothing a model file holds escapes as an exception,
/// so one bad file cannot stop the others from loading or the server from serving.
/// </summary>
public sealed partial class VersionLoader(
    IOptions<ModelRepositoryOptions> repository,
    EngineLimits limits,
    TimeProvider clock,
    JacServiceMetrics metrics,
    ILogger<VersionLoader> logger)
{
    /// <summary>
    /// Loads and warms the version (when Models:Warmup is on), at the shapes AUTO had chosen for on
    /// <paramref name="predecessor"/>, the snapshot it takes over from, too. Where only the weights differ between the two
    /// files, AUTO's choices are taken over as they are rather than timed again: a take-over under load otherwise times
    /// both modes once per batch size traffic reached (1.7-2.1 s from folder in to serving under 64 callers).
    /// </summary>
    public ModelEntry Load(string name, FoundVersion found, ConfigRead config, ModelVersion? predecessor, CancellationToken stopping)
    {
        long started = Stopwatch.GetTimestamp();
        var entry = Build(name, found.Version, found.ModelPath, config);
        var served = predecessor?.DerivativeChoices ?? [];
        if (predecessor is not null && entry.Model is { } model && model.AdoptDerivativeChoices(predecessor.Graph.Structure, served) is > 0 and var adopted)
            LogAdopted(name, found.Version, adopted, predecessor.Version);
        double loadSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        double warmupSeconds = 0;
        if (entry.State == ModelState.Ready && repository.Value.Warmup) (entry, warmupSeconds) = Warm(entry, served, stopping);
        // What loading and the warm-up's largest calls used stays in the native heap for reuse (Engine:ReuseLargeAllocations)
        // though traffic may never need as much: eight torchvision classifiers held 9.4 GiB after their warm-ups, 4.7 GiB
        // given back; a server with ConvNeXt-Tiny loaded without warm-up, 1,026 -> 947 MiB.
        NativeHeap.ReturnFreePages();
        metrics.RecordModelLoad(name, entry.State, loadSeconds + warmupSeconds);
        return entry with { LoadedAt = clock.GetUtcNow(), LoadSeconds = loadSeconds, WarmupSeconds = warmupSeconds };
    }

    private ModelEntry Build(string name, int version, string path, ConfigRead read)
    {
        try
        {
            if (!File.Exists(path)) throw new ModelLoadException($"{RepositoryScanner.ModelFileName} not found in {Path.GetDirectoryName(path)}");
            var config = read.Config ?? throw new InvalidDataException(read.Error!.Message, read.Error);
            var replicas = ModelReplicas.LoadFile(name, version, path, limits with { OnnxRuntimeThreads = config.Batching.IntraOpThreads });
            foreach (var replica in replicas.All)
            {
                replica.PassFellBackToEager += (pass, reason) => LogPassEager(name, version, replica.Device, pass, reason);
                replica.DerivativeFellBackToEngine += (what, reason) =>
                {
                    LogNotCompiled(name, version, what, reason);
                    metrics.RecordNotCompiled(name);
                };
                replica.PredictFellBackToEngine += reason => LogPredictInEngine(name, version, reason);
            }
            var model = replicas.Primary;
            LogLoaded(name, version, model.Inputs.Count, model.Outputs.Count, model.Graph.Nodes.Length, model.PredictRuntime,
                string.Join(", ", replicas.All.Select(r => r.Device)));
            if (model.Rewrites.Count > 0) LogRewrites(name, version, string.Join("; ", model.Rewrites));
            if (model.PredictRuntimeNote.Length > 0) LogPredictInEngine(name, version, model.PredictRuntimeNote);
            var lifetime = new VersionLifetime(replicas, new ModelBatcher(replicas, config.Batching, clock, metrics));
            return new ModelEntry(name, version, ModelState.Ready, "", lifetime) { DefaultMode = config.DerivativeMode };
        }
        catch (Exception e) when (e is ModelLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
        {
            LogFailed(name, version, e.Message);
            return ModelEntry.Failed(name, version, e.Message);
        }
        catch (Exception e)
        {
            // Anything else is our bug, but one model's bug must not take the others down.
            LogFailedUnexpectedly(e, name, version);
            return ModelEntry.Failed(name, version, $"internal error while loading: {NativeErrors.Trim(e.Message)}");
        }
    }

    /// <summary>Warms the version up: the entry to register (FAILED, its snapshot freed, when the warm-up failed) and the seconds it took.</summary>
    private (ModelEntry, double) Warm(ModelEntry entry, IReadOnlyList<DerivativeChoice> served, CancellationToken stopping)
    {
        long started = Stopwatch.GetTimestamp();
        var outcome = ModelWarmup.RunAsync(entry, repository.Value.WarmupMaxRows, served, stopping).GetAwaiter().GetResult();
        var took = Stopwatch.GetElapsedTime(started);
        if (outcome.Skipped is { } reason) LogWarmupSkipped(entry.Name, entry.Version, reason);
        if (outcome.Failure is not { } failure)
        {
            if (outcome.Skipped is null)
                LogWarmedUp(entry.Name, entry.Version, took.TotalMilliseconds, outcome.NotWarmed.Count == 0 ? "" : $"; not warmed: {string.Join("; ", outcome.NotWarmed)}");
            return (entry, took.TotalSeconds);
        }
        LogWarmupFailed(entry.Name, entry.Version, failure);
        entry.Lifetime!.ForceFreeAsync().GetAwaiter().GetResult();
        return (ModelEntry.Failed(entry.Name, entry.Version, $"warm-up failed: {failure}"), took.TotalSeconds);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Model} version {Version} failed its warm-up and is not served: {Reason}")]
    private partial void LogWarmupFailed(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Model} version {Version} takes {Count} derivative-mode choices from version {Predecessor}, whose file differs in its weights only")]
    private partial void LogAdopted(string model, int version, int count, int predecessor);

    [LoggerMessage(Level = LogLevel.Information, Message = "Warmed up {Model} version {Version} in {Milliseconds:F0} ms{NotWarmed}")]
    private partial void LogWarmedUp(string model, int version, double milliseconds, string notWarmed);

    [LoggerMessage(Level = LogLevel.Information, Message = "Warm-up of {Model} version {Version} skipped: {Reason}; its first calls pay for planning and compilation")]
    private partial void LogWarmupSkipped(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded {Model} version {Version}: {Inputs} inputs, {Outputs} outputs, {Nodes} nodes; Predict runs in {PredictRuntime}; on {Devices}")]
    private partial void LogLoaded(string model, int version, int inputs, int outputs, int nodes, string predictRuntime, string devices);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Rewrote the graph of {Model} version {Version} (Engine:GraphRewrites): {Rewrites}")]
    private partial void LogRewrites(string model, int version, string rewrites);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Predict for {Model} version {Version} falls back to the engine: {Reason}")]
    private partial void LogPredictInEngine(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Model} version {Version} on {Device}: the pass '{Pass}' cannot be recorded as a CUDA graph and runs eagerly: {Reason}")]
    private partial void LogPassEager(string model, int version, string device, string pass, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Model} version {Version}: the {What} runs in the interpreter, not as a compiled graph: {Reason}")]
    private partial void LogNotCompiled(string model, int version, string what, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} version {Version} failed to load: {Reason}")]
    private partial void LogFailed(string model, int version, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Model {Model} version {Version} failed to load with an unexpected error")]
    private partial void LogFailedUnexpectedly(Exception exception, string model, int version);
}
