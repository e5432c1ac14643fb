namespace JacService.Server.Models;

/// <summary>A model folder as the scan saw it: its config.json (read once for all its versions) and its version folders, ascending.</summary>
public sealed record FoundModel(string Name, ConfigRead Config, IReadOnlyList<FoundVersion> Versions)
{
    /// <summary>The versions its policy serves out of those found (every one when the config.json did not read: each then fails with its error).</summary>
    public IReadOnlyList<int> InPolicy(IEnumerable<int> among, VersionPolicy serverDefault) =>
        (Config.Config?.VersionPolicy ?? serverDefault).Select(among.ToList());

    public string Policy(VersionPolicy serverDefault) => (Config.Config?.VersionPolicy ?? serverDefault).ToString();
}
