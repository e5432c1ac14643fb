using System.ComponentModel.DataAnnotations;

namespace JacService.Server.Control;

/// <summary>
/// The ModelControl service (configuration section "ModelControl"): off unless <see cref="Enabled"/>, and then every
/// call must present the bearer token given by exactly one of <see cref="Token"/> and <see cref="TokenFile"/>. The token
/// is checked, and the file read, once at start; a changed file takes effect at the next start.
/// </summary>
public sealed class ModelControlOptions : IValidatableObject
{
    public const string Section = "ModelControl";

    /// <summary>
    /// 32 characters: `openssl rand -hex 16` (128 random bits), the shortest common recipe, reaches it, and 128 bits
    /// cannot be guessed through a network; a word or a short password, the usual mistake, cannot reach it.
    /// </summary>
    public const int MinTokenLength = 32;

    /// <summary>Maps the ModelControl gRPC service; off by default, since it lets its callers change what is served.</summary>
    public bool Enabled { get; set; }

    /// <summary>The token itself (e.g. from the variable ModelControl__Token); prefer <see cref="TokenFile"/>.</summary>
    public string? Token { get; set; }

    /// <summary>A file holding the token (e.g. a mounted Kubernetes Secret); surrounding whitespace is ignored.</summary>
    public string? TokenFile { get; set; }

    private string? _resolved;

    /// <summary>The token callers must present, as read during validation.</summary>
    internal string ResolvedToken => _resolved ?? throw new InvalidOperationException("ModelControl options were not validated");

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!Enabled) yield break;
        var problem = Resolve(out _resolved);
        if (problem is not null) yield return new ValidationResult($"ModelControl: {problem}", [nameof(Token), nameof(TokenFile)]);
    }

    /// <summary>Reads the token once; the problem, if any, names the setting and never the token.</summary>
    private string? Resolve(out string? token)
    {
        token = null;
        bool hasToken = !string.IsNullOrEmpty(Token), hasFile = !string.IsNullOrWhiteSpace(TokenFile);
        if (hasToken == hasFile)
            return hasToken
                ? "set one of Token and TokenFile, not both"
                : "Enabled needs the bearer token its callers must present: set TokenFile (a file holding it, e.g. a mounted Secret) or Token";
        string text;
        if (hasFile)
        {
            try
            {
                text = File.ReadAllText(TokenFile!);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"TokenFile '{TokenFile}' cannot be read: {e.Message}";
            }
            if (string.IsNullOrWhiteSpace(text)) return $"TokenFile '{TokenFile}' is empty";
        }
        else
        {
            text = Token!;
        }
        // A file written by echo or an editor ends with a newline that is not part of the token.
        var candidate = text.Trim();
        string source = hasFile ? $"the token in TokenFile '{TokenFile}'" : "Token";
        // It travels as an HTTP/2 header value, where only visible ASCII survives every proxy unchanged.
        if (candidate.Any(c => c is < '!' or > '~'))
            return $"{source} must be visible ASCII characters without spaces (it travels in the authorization header)";
        if (candidate.Length < MinTokenLength)
            return $"{source} is shorter than {MinTokenLength} characters; make one with: openssl rand -hex 32";
        token = candidate;
        return null;
    }
}
