using JacService.Server.Batching;
using JacService.Server.Execution;
using Microsoft.Extensions.Options;

namespace JacService.Server.Models;

/// <summary>
/// Reads the repository's layout, ROOT/&lt;model&gt;/&lt;version&gt;/model.onnx with an optional ROOT/&lt;model&gt;/config.json,
/// into what a load needs: each model's settings and each version's file stamps. It only reads; what is loaded, kept or
/// retired is the loader's call.
/// </summary>
public sealed partial class RepositoryScanner(
    IOptions<ModelRepositoryOptions> repository,
    IOptions<BatchingOptions> batching,
    IOptions<LimitsOptions> limits,
    ILogger<RepositoryScanner> logger)
{
    public const string ModelFileName = "model.onnx";
    public const string ConfigFileName = "config.json";

    /// <summary>
    /// An empty file of this name in a version folder declares the copy complete: the folder is loaded at the next poll
    /// instead of after its files have held still for a whole poll interval.
    /// </summary>
    public const string CompleteMarker = "COMPLETE";

    private readonly HashSet<string> _reportedFolders = [];

    public string Root => repository.Value.FullRoot;

    /// <summary>Every model folder, in name order.</summary>
    public IReadOnlyList<FoundModel> Scan()
    {
        if (!Directory.Exists(Root)) return [];
        return Directory.EnumerateDirectories(Root).Select(Path.GetFileName).OfType<string>()
            .Order(StringComparer.Ordinal).Select(ScanModel).OfType<FoundModel>().ToList();
    }

    /// <summary>One model folder, or null when there is none of that name (or it vanished while being read).</summary>
    public FoundModel? ScanModel(string name)
    {
        var folder = Path.Combine(Root, name);
        try
        {
            var configPath = Path.Combine(folder, ConfigFileName);
            var configStamp = FileStamp.Of(configPath);
            var versions = new List<FoundVersion>();
            foreach (var versionDir in Directory.EnumerateDirectories(folder))
            {
                var versionName = Path.GetFileName(versionDir);
                if (int.TryParse(versionName, out int version) && version > 0 && versionName == version.ToString())
                {
                    var modelPath = Path.Combine(versionDir, ModelFileName);
                    versions.Add(new FoundVersion(version, modelPath, new VersionStamp(FileStamp.Of(modelPath), configStamp),
                        File.Exists(Path.Combine(versionDir, CompleteMarker))));
                }
                else
                {
                    bool first;
                    lock (_reportedFolders) first = _reportedFolders.Add(versionDir);
                    if (first) LogIgnoredFolder(versionDir);
                }
            }
            return new FoundModel(name, ReadConfig(configPath), versions.OrderBy(v => v.Version).ToList());
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The server's defaults overlaid by the model's config.json, if it has one.</summary>
    private ConfigRead ReadConfig(string path)
    {
        try
        {
            return new ConfigRead(ModelConfig.Load(path, ModelConfig.ServerDefaults(batching.Value, repository.Value.VersionPolicy), limits.Value.MaxConfigBytes), null);
        }
        catch (InvalidDataException e)
        {
            return new ConfigRead(null, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new ConfigRead(null, new InvalidDataException($"{path}: {e.Message}", e));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignoring {Folder}: version folders are positive integers")]
    private partial void LogIgnoredFolder(string folder);
}
