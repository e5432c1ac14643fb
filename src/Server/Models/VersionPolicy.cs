using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Models;

/// <summary>
/// Which of a model's version folders are served, as in Triton and TensorFlow Serving: the <see cref="Latest"/> N
/// highest, <see cref="All"/>, or the <see cref="Specific"/> ones; at most one of the three is set, and none means all. Server-wide under
/// Models:VersionPolicy, per model as "versionPolicy" in its config.json (which replaces the server's whole). The
/// server default is all: callers that name a version keep getting it, and one repository can hold a model's versions
/// side by side; a repository that keeps old folders around sets latest instead.
/// </summary>
public sealed class VersionPolicy : IValidatableObject
{
    /// <summary>Serve the N highest versions (0: this form is not used).</summary>
    [Range(0, 1_000_000)]
    public int Latest { get; set; }

    /// <summary>Serve every version found.</summary>
    public bool All { get; set; }

    /// <summary>Serve exactly these versions (those not found are reported, not waited for).</summary>
    public int[] Specific { get; set; } = [];

    public static VersionPolicy Default => new();

    private bool ServesAll => All || (Latest == 0 && Specific.Length == 0);

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        int forms = (Latest > 0 ? 1 : 0) + (All ? 1 : 0) + (Specific.Length > 0 ? 1 : 0);
        if (forms > 1)
            yield return new ValidationResult(
                $"a version policy sets one of latest (a count), all (true) or specific (a list of versions), got latest {Latest}, all {All.ToString().ToLowerInvariant()}, specific [{string.Join(", ", Specific)}]");
        if (Specific.Any(v => v < 1))
            yield return new ValidationResult($"specific versions are positive integers, got [{string.Join(", ", Specific)}]");
    }

    /// <summary>The versions to serve out of those found.</summary>
    public IReadOnlyList<int> Select(IReadOnlyCollection<int> found) =>
        ServesAll ? found.Order().ToList()
        : Latest > 0 ? found.OrderDescending().Take(Latest).Order().ToList()
        : found.Where(Specific.Contains).Order().ToList();

    public override string ToString() =>
        ServesAll ? "all" : Latest > 0 ? $"latest {Latest}" : $"specific [{string.Join(", ", Specific)}]";
}
