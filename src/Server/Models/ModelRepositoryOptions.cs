using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Models;

/// <summary>Where models live: ROOT/&lt;model&gt;/&lt;version&gt;/model.onnx (configuration section "Models").</summary>
public sealed class ModelRepositoryOptions : IValidatableObject
{
    public const string Section = "Models";

    /// <summary>The repository folder; relative paths are taken from the working directory.</summary>
    [Required]
    public string Root { get; set; } = "models";

    public string FullRoot => Path.GetFullPath(Root);

    /// <summary>Which versions of each model are served unless its config.json says otherwise (default: all).</summary>
    public VersionPolicy VersionPolicy { get; set; } = VersionPolicy.Default;

    /// <summary>
    /// Seconds between looks at the repository for new, changed and removed versions; 0 (the default) loads it once, at
    /// start. Off by default because the usual deployment bakes or mounts a repository that does not change under a
    /// running replica (new models ship as new pods), and a server that never reloads can never be surprised by a
    /// half-copied folder; set it where operators update a mounted volume in place.
    /// </summary>
    [Range(0, 86_400)]
    public double PollSeconds { get; set; }

    public TimeSpan? PollInterval => PollSeconds > 0 ? TimeSpan.FromSeconds(PollSeconds) : null;

    /// <summary>Send each version a few requests of its own before it is ready (see ModelWarmup).</summary>
    public bool Warmup { get; set; } = true;

    /// <summary>
    /// The largest batch bucket the warm-up sends a Predict and a Jacobian (default 64). Buckets above it plan on their
    /// first calls; a lower value loads huge models faster, a higher one spares callers of large batches that first cost.
    /// </summary>
    [Range(1, 65_536)]
    public int WarmupMaxRows { get; set; } = 64;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!Directory.Exists(FullRoot))
            yield return new ValidationResult($"Models:Root '{Root}' (resolved to '{FullRoot}') is not a directory", [nameof(Root)]);
        foreach (var problem in VersionPolicy.Validate(context))
            yield return new ValidationResult($"Models:VersionPolicy: {problem.ErrorMessage}", [nameof(VersionPolicy)]);
    }
}
