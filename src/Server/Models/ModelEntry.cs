using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>What the registry knows of one model version; replaced whole when its state changes.</summary>
public sealed record ModelEntry(string Name, int Version, ModelState State, string Error, ModelVersion? Model, ModelBatcher? Batcher)
{
    /// <summary>What an AUTO request runs in: the config.json "derivativeMode", or AUTO (the engine measures) without one.</summary>
    public DerivativeMode DefaultMode { get; init; } = DerivativeMode.Auto;

    /// <summary>When the version finished loading (READY or FAILED); null while it loads.</summary>
    public DateTimeOffset? LoadedAt { get; init; }

    /// <summary>Seconds spent reading, validating and planning the version, and warming it up.</summary>
    public double LoadSeconds { get; init; }

    public double WarmupSeconds { get; init; }

    public static ModelEntry Loading(string name, int version) => new(name, version, ModelState.Loading, "", null, null);
}
