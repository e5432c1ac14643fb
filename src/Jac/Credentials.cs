using System.CommandLine;
using Grpc.Core;

namespace JacService.Jac;

/// <summary>
/// What jac sends to a server with authentication: a bearer token (a JWT; for `jac control`, the ModelControl token) as
/// <c>authorization: Bearer</c> and an API key as <c>x-api-key</c>. Each comes from a file, the command line or a
/// variable, in that order of preference: a value on the command line is visible in the process list and shell history.
/// </summary>
public static class Credentials
{
    public const string TokenVariable = "JAC_TOKEN";
    public const string ApiKeyVariable = "JAC_API_KEY";

    public static readonly Option<string?> Token = new("--token")
    {
        Description = $"Bearer token sent as 'authorization: Bearer': a JWT, or for 'jac control' the ModelControl token (visible in the process list: prefer --token-file, {TokenVariable} or {ControlVerbs.TokenVariable})",
        Recursive = true,
    };

    public static readonly Option<string?> TokenFile = new("--token-file")
    {
        Description = "A file holding the bearer token (for 'jac control', the ModelControl token)",
        Recursive = true,
    };

    public static readonly Option<string?> ApiKey = new("--api-key")
    {
        Description = $"API key sent as 'x-api-key' (visible in the process list: prefer --api-key-file or {ApiKeyVariable})",
        Recursive = true,
    };

    public static readonly Option<string?> ApiKeyFile = new("--api-key-file")
    {
        Description = "A file holding the API key",
        Recursive = true,
    };

    public static void AddTo(RootCommand root)
    {
        root.Options.Add(Token);
        root.Options.Add(TokenFile);
        root.Options.Add(ApiKey);
        root.Options.Add(ApiKeyFile);
    }

    /// <summary>The metadata of every call of a verb other than `jac control`: bearer token and API key, those given.</summary>
    public static Metadata? Headers(ParseResult r)
    {
        var headers = ApiKeyHeaders(r) ?? [];
        if (Resolve(r, Token, TokenFile, TokenVariable) is { } token) headers.Add("authorization", "Bearer " + token);
        return headers.Count == 0 ? null : headers;
    }

    /// <summary>The API key alone: on ModelControl calls the authorization header carries the ModelControl token.</summary>
    public static Metadata? ApiKeyHeaders(ParseResult r) =>
        Resolve(r, ApiKey, ApiKeyFile, ApiKeyVariable) is { } key ? new Metadata { { "x-api-key", key } } : null;

    /// <summary>The value from <paramref name="file"/>, else <paramref name="value"/>, else the variable; null when none is given.</summary>
    public static string? Resolve(ParseResult r, Option<string?> value, Option<string?> file, string variable)
    {
        var (text, path) = (r.GetValue(value), r.GetValue(file));
        if (text is not null && path is not null) throw new JacException($"give {value.Name} or {file.Name}, not both");
        if (path is not null)
        {
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new JacException($"{file.Name}: cannot read '{path}': {e.Message}");
            }
            if (string.IsNullOrWhiteSpace(text)) throw new JacException($"{file.Name}: '{path}' is empty");
        }
        text ??= Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrWhiteSpace(text)) return null;
        // A file written by echo or an editor ends with a newline that is not part of the credential.
        text = text.Trim();
        if (text.Any(c => c is < '!' or > '~')) throw new JacException($"the value of {value.Name} must be visible ASCII characters without spaces");
        return text;
    }
}
