using System.Collections.Immutable;
using JacService.Core.Derivatives;
using JacService.Core.Models;
using JacService.Server.Batching;

namespace JacService.Server.Models;

/// <summary>
/// What the registry knows of one model version; replaced whole when its state changes. A READY entry holds the
/// loaded snapshot through its <see cref="Lifetime"/>, which calls lease (ModelRegistry.Acquire).
/// </summary>
public sealed record ModelEntry(string Name, int Version, ModelState State, string Error, VersionLifetime? Lifetime)
{
    public ModelVersion? Model => Lifetime?.Model;

    public ModelBatcher? Batcher => Lifetime?.Batcher;

    /// <summary>What an AUTO request runs in: the config.json "derivativeMode", or AUTO (the engine measures) without one.</summary>
    public DerivativeMode DefaultMode { get; init; } = DerivativeMode.Auto;

    /// <summary>When the version finished loading (READY or FAILED); null while it loads.</summary>
    public DateTimeOffset? LoadedAt { get; init; }

    /// <summary>Seconds spent reading, validating and planning the version, and warming it up.</summary>
    public double LoadSeconds { get; init; }

    public double WarmupSeconds { get; init; }

    /// <summary>The version's states since the server first saw it, oldest first (the registry appends).</summary>
    public ImmutableList<ModelStateChange> History { get; init; } = [];

    public static ModelEntry Loading(string name, int version) => new(name, version, ModelState.Loading, "", null);

    public static ModelEntry Failed(string name, int version, string error) => new(name, version, ModelState.Failed, error, null);
}
