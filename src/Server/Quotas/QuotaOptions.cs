using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Quotas;

/// <summary>
/// Per-caller limits on call rate and concurrency (configuration section "Quotas"), off by default. Callers are told
/// apart by principal name (API key name, JWT subject, certificate subject); anonymous callers by remote address.
/// Health and reflection are never limited. Read and validated once at start.
/// </summary>
public sealed class QuotaOptions : IValidatableObject
{
    public const string Section = "Quotas";

    public bool Enabled { get; set; }

    /// <summary>The limits of every principal not listed in <see cref="Principals"/>.</summary>
    public QuotaLimits Default { get; set; } = new();

    /// <summary>The limits of each anonymous caller's remote address. Unset: <see cref="Default"/>.</summary>
    public QuotaLimits? Anonymous { get; set; }

    /// <summary>Limits of named principals, in place of <see cref="Default"/>.</summary>
    public Dictionary<string, QuotaLimits> Principals { get; set; } = new(StringComparer.Ordinal);

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!Enabled) yield break;
        var problems = Default.Problems($"{Section}:Default")
            .Concat(Anonymous?.Problems($"{Section}:Anonymous") ?? [])
            .Concat(Principals.SelectMany(p => p.Value.Problems($"{Section}:Principals:{p.Key}")));
        foreach (var problem in problems) yield return new ValidationResult(problem);
        if (new[] { Default, Anonymous }.Concat(Principals.Values).All(l => l is null || (l.RequestsPerSecond == 0 && l.ConcurrentRequests == 0)))
            yield return new ValidationResult($"{Section}:Enabled is true but no limit is set: give {Section}:Default (or Anonymous, or Principals:NAME) a RequestsPerSecond or ConcurrentRequests");
    }
}
