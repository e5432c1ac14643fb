using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>What the registry knows of one model version; replaced whole when its state changes.</summary>
public sealed record ModelEntry(string Name, int Version, ModelState State, string Error, ModelVersion? Model, ModelBatcher? Batcher)
{
    public static ModelEntry Loading(string name, int version) => new(name, version, ModelState.Loading, "", null, null);
}
