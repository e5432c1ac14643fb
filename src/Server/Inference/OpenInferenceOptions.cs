using System.ComponentModel.DataAnnotations;
using JacService.Server.Extensions;

namespace JacService.Server.Inference;

/// <summary>The Open Inference Protocol's HTTP/REST binding (configuration section "OpenInference").</summary>
public sealed class OpenInferenceOptions : IValidatableObject
{
    public const string Section = "OpenInference";

    /// <summary>
    /// Where the protocol's HTTP/REST binding (/v2/...) listens, apart from the gRPC port, which speaks HTTP/2 only: an
    /// http://HOST:PORT address, served as HTTP/1.1. Empty (the default) serves none: every port a server opens is one
    /// more to secure, and the protocol's gRPC binding is served anyway. An https:// address names the port of a
    /// Kestrel:Endpoints entry, which Kestrel binds with its certificate as configured.
    /// </summary>
    public string RestUrl { get; set; } = "";

    public bool ServesRest => !string.IsNullOrWhiteSpace(RestUrl);

    /// <summary>The REST port, or null where none is served (or <see cref="RestUrl"/> does not parse: validation reports it).</summary>
    public int? RestPort() => ServesRest ? HttpAddress.Parse(RestUrl, out _)?.Port : null;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!ServesRest) yield break;
        if (HttpAddress.Parse(RestUrl, out var problem) is null)
            yield return new ValidationResult($"OpenInference:RestUrl must be http://HOST:PORT or empty ({problem}); got '{RestUrl}'", [nameof(RestUrl)]);
    }
}
