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

    /// <summary>Send each version a few requests of its own before it is ready (see ModelWarmup).</summary>
    public bool Warmup { get; set; } = true;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!Directory.Exists(FullRoot))
            yield return new ValidationResult($"Models:Root '{Root}' (resolved to '{FullRoot}') is not a directory", [nameof(Root)]);
    }
}
