using JacService.Core;
using JacService.Protos.V1;
using JacService.Server.Grpc;
using JacService.Server.Models;
using Microsoft.Extensions.Options;

namespace JacService.Server.Control;

/// <summary>
/// The repository as ListRepository shows it: every model folder and version folder on disk, next to what the registry
/// lists. A listed version shows its registry state; a folder that is not listed says why, from what the loader would
/// do with it (unloaded, outside its policy, no model.onnx, waiting for its files, or not polled).
/// </summary>
public sealed class RepositoryListing(
    RepositoryScanner scanner,
    ModelRegistry registry,
    ModelRepositoryLoader loader,
    IOptions<ModelRepositoryOptions> repository)
{
    /// <summary>Every model, or only <paramref name="only"/> (empty when it is neither on disk nor listed), in name order.</summary>
    public IReadOnlyList<RepositoryModel> List(string? only = null)
    {
        // The name filters a whole scan instead of reaching the disk by itself: it comes from a caller, unchecked.
        var found = scanner.Scan().Where(m => only is null || m.Name == only).ToDictionary(m => m.Name);
        var listed = registry.Entries.Where(e => only is null || e.Name == only).GroupBy(e => e.Name).ToDictionary(g => g.Key, g => g.ToList());
        return found.Keys.Union(listed.Keys).Order(StringComparer.Ordinal)
            .Select(name => Describe(name, found.GetValueOrDefault(name), listed.GetValueOrDefault(name) ?? []))
            .ToList();
    }

    private RepositoryModel Describe(string name, FoundModel? found, List<ModelEntry> listed)
    {
        var serverPolicy = repository.Value.VersionPolicy;
        var model = new RepositoryModel
        {
            Name = name,
            Unloaded = loader.IsUnloaded(name),
            VersionPolicy = found?.Policy(serverPolicy) ?? "",
            ConfigError = found?.Config.Error?.Message ?? "",
        };
        var folders = found?.Versions ?? [];
        var inPolicy = found?.InPolicy(folders.Select(v => v.Version), serverPolicy) ?? [];
        foreach (int version in folders.Select(v => v.Version).Union(listed.Select(e => e.Version)).Order())
        {
            var folder = folders.FirstOrDefault(v => v.Version == version);
            var entry = listed.FirstOrDefault(e => e.Version == version);
            var described = new RepositoryVersion { Version = version.ToString(), FolderPresent = folder is not null };
            if (entry is not null)
            {
                described.State = entry.State.ToString().ToUpperInvariant();
                described.Reason = entry.Error;
                described.CallsInFlight = entry.Lifetime?.Calls ?? 0;
            }
            else
            {
                (described.NotLoaded, described.Reason) = WhyNotLoaded(model, folder!, inPolicy);
                described.State = "NOT_LOADED";
            }
            model.Versions.Add(described);
        }
        return model;
    }

    private (NotLoadedReason, string) WhyNotLoaded(RepositoryModel model, FoundVersion folder, IReadOnlyList<int> inPolicy)
    {
        if (model.Unloaded) return (NotLoadedReason.Unloaded, "unloaded through ModelControl; LoadModel serves it again");
        if (!inPolicy.Contains(folder.Version)) return (NotLoadedReason.OutsidePolicy, $"outside its version policy ({model.VersionPolicy})");
        if (folder.Stamp.Model is null) return (NotLoadedReason.NoModelFile, $"its folder has no {RepositoryScanner.ModelFileName} (yet)");
        if (repository.Value.PollInterval is not { } interval)
            return (NotLoadedReason.NotPolled,
                "the repository is read at start only (Models:PollSeconds is 0) and this folder appeared since; LoadModel loads it");
        return (NotLoadedReason.WaitingForFiles,
            $"waiting for its files to hold still for one poll interval ({interval.TotalSeconds:0.###} s), or for a {RepositoryScanner.CompleteMarker} file beside {RepositoryScanner.ModelFileName}");
    }

    /// <summary>One model as <see cref="List"/> shows it; NOT_FOUND when it is neither on disk nor listed.</summary>
    public RepositoryModel Get(string name) =>
        List(name).FirstOrDefault() ?? throw new ModelNotFoundException($"the repository {scanner.Root} has no model folder {CallerText.Quote(name)} and no version of it is listed");
}
