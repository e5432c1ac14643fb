namespace JacService.Core.Models;

/// <summary>Limits of the engine, shared by every model version.</summary>
public sealed record EngineLimits
{
    /// <summary>Working memory one pass may use for tangents, or for kept values plus cotangents; the basis (then the batch) is split to stay under it.</summary>
    public long WorkingMemoryBytes { get; init; } = 512L << 20;

    /// <summary>Largest result (outputs plus Jacobians) a request may ask for; larger ones are refused before any work.</summary>
    public long MaxResultBytes { get; init; } = 256L << 20;

    /// <summary>Plans kept per model version (one per distinct set of input shapes).</summary>
    public int MaxCachedPlans { get; init; } = 64;

    /// <summary>AUTO times both modes on the first batch of each shape (true), or picks by size alone (false).</summary>
    public bool CalibrateAuto { get; init; } = true;
}
